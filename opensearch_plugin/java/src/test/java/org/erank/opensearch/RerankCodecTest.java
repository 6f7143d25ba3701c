package org.erank.opensearch;

import org.junit.Test;

import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

public class RerankCodecTest {

    private static final RerankOptions NO_OPTIONS = new RerankOptions(null, null, null, null, false);

    @Test
    public void encodesTheFullRequest() throws Exception {
        String json = RerankCodec.encodeRequest(
            "what is \"bm25\"?",
            Arrays.asList("doc one", "doc\ntwo", ""),
            "Judge it.",
            null,
            new float[] { 7.5f, 3.25f, 0.125f },
            0.2,
            new RerankOptions("rrf", 30, "best_passage", 64, true)
        );
        Map<String, Object> map = Fixtures.parse(json);
        assertEquals("what is \"bm25\"?", map.get("query"));
        assertEquals(Arrays.asList("doc one", "doc\ntwo", ""), map.get("documents"));
        assertEquals("Judge it.", map.get("instruction"));
        List<?> scores = (List<?>) map.get("first_stage_scores");
        assertEquals(3, scores.size());
        assertEquals(7.5, ((Number) scores.get(0)).doubleValue(), 0.0);
        assertEquals(0.125, ((Number) scores.get(2)).doubleValue(), 0.0);
        assertEquals(0.2, ((Number) map.get("alpha")).doubleValue(), 0.0);
        assertFalse("top_n is never sent: one result per document", map.containsKey("top_n"));
        assertEquals("rrf", map.get("fusion"));
        assertEquals(30, map.get("rank_constant"));
        assertEquals("best_passage", map.get("long_documents"));
        assertEquals(64, map.get("passage_overlap"));
        assertEquals(true, map.get("return_reasoning"));
    }

    @Test
    public void optionalMembersAreOmitted() throws Exception {
        Map<String, Object> map = Fixtures.parse(RerankCodec.encodeRequest("q", Arrays.asList("d"), null, null, null, null, NO_OPTIONS));
        assertEquals(2, map.size());
        assertTrue(map.containsKey("query"));
        assertTrue(map.containsKey("documents"));
    }

    @Test(expected = IllegalArgumentException.class)
    public void scoreCountMustMatch() {
        RerankCodec.encodeRequest("q", Arrays.asList("a", "b"), null, null, new float[] { 1f }, null, NO_OPTIONS);
    }

    @Test
    public void sendsTheInstructionPresetByName() throws Exception {
        Map<String, Object> map = Fixtures.parse(RerankCodec.encodeRequest("q", Arrays.asList("d"), null, "web_search", null, null, NO_OPTIONS));
        assertEquals("web_search", map.get("instruction_preset"));
        assertFalse("the preset stands in for the instruction", map.containsKey("instruction"));
    }

    @Test
    public void sendsTheCallsBudgetWithOnBudgetCut() throws Exception {
        RerankOptions cut = new RerankOptions(null, null, null, null, false).withBudget(9_950);
        Map<String, Object> map = Fixtures.parse(RerankCodec.encodeRequest("q", Arrays.asList("d"), null, null, null, null, cut));
        assertEquals(9_950, map.get("budget_ms"));
        assertEquals("cut", map.get("on_budget"));
        assertFalse(map.containsKey("finish_in_background"));

        RerankOptions background = new RerankOptions(null, null, null, null, false, "cut", true).withBudget(0);
        map = Fixtures.parse(RerankCodec.encodeRequest("q", Arrays.asList("d"), null, null, null, null, background));
        assertEquals("a budget is at least 1 ms", 1, map.get("budget_ms"));
        assertEquals(true, map.get("finish_in_background"));
    }

    @Test
    public void onBudgetFailOpenSendsNoBudget() throws Exception {
        RerankOptions failOpen = new RerankOptions(null, null, null, null, false, "fail_open", false).withBudget(9_950);
        Map<String, Object> map = Fixtures.parse(RerankCodec.encodeRequest("q", Arrays.asList("d"), null, null, null, null, failOpen));
        assertEquals("fail_open", map.get("on_budget"));
        assertFalse(map.containsKey("budget_ms"));
        assertFalse(map.containsKey("finish_in_background"));
        assertEquals(3, map.size());
    }

    @Test
    public void decodesCompletionsThinkingTokensAndTheCounts() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(
            200,
            "{\"results\":[{\"index\":2,\"relevance_score\":0.9,\"completion\":\"full\",\"thinking_tokens\":0},"
                + "{\"index\":0,\"relevance_score\":0.5,\"completion\":\"cut\",\"thinking_tokens\":412},"
                + "{\"index\":1,\"relevance_score\":0.0,\"status\":\"unscored\",\"completion\":\"unscored\",\"thinking_tokens\":0}],"
                + "\"completions\":{\"full\":1,\"cut\":1,\"unscored\":1,\"cached\":1,\"deadline_ms\":1950,\"closing_margin_ms\":61.5}}",
            3
        );
        RerankResponse.Result cut = response.results().get(1);
        assertEquals("cut", cut.completion());
        assertEquals(Integer.valueOf(412), cut.thinkingTokens());
        assertEquals("unscored", response.results().get(2).completion());
        RerankResponse.Completions counts = response.completions();
        assertEquals(
            Map.of("full", 1, "cut", 1, "unscored", 1, "cached", 1, "deadline_ms", 1950, "closing_margin_ms", 61.5),
            counts.toMap()
        );
        assertEquals(
            Arrays.asList("full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"),
            List.copyOf(counts.toMap().keySet())
        );
        assertTrue(counts.reachedDeadline());
    }

    @Test
    public void aReplyFromAnOlderRestFrontIsFull() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(200, GOOD, 2);
        for (RerankResponse.Result result : response.results()) {
            assertEquals("full", result.completion());
            assertNull(result.thinkingTokens());
        }
        assertEquals(noDeadline(2, 0, 0, 0), response.completions().toMap());
        assertFalse(response.completions().reachedDeadline());
        RerankResponse withUsage = RerankCodec.decodeResponse(
            200,
            "{\"results\":[{\"index\":0,\"relevance_score\":1}],\"usage\":{\"prompt_tokens\":90,\"cache_hits\":1}}",
            1
        );
        assertEquals("cached: the reply's usage.cache_hits", noDeadline(1, 0, 0, 1), withUsage.completions().toMap());
    }

    /** The counts of a reply without a deadline. */
    private static Map<String, Object> noDeadline(int full, int cut, int unscored, int cached) {
        return Map.of("full", full, "cut", cut, "unscored", unscored, "cached", cached, "deadline_ms", 0, "closing_margin_ms", 0.0);
    }

    @Test
    public void withoutTheCountsTheResultsAreCounted() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(
            200,
            "{\"results\":[{\"index\":0,\"relevance_score\":1,\"completion\":\"cut\"},{\"index\":1,\"relevance_score\":0},"
                + "{\"index\":2,\"relevance_score\":0,\"completion\":\"unscored\"}]}",
            3
        );
        assertEquals(noDeadline(1, 1, 1, 0), response.completions().toMap());
        RerankResponse partial = RerankCodec.decodeResponse(
            200,
            "{\"results\":[{\"index\":0,\"relevance_score\":1}],\"completions\":{\"full\":1}}",
            1
        );
        assertEquals("a count the REST front leaves out is 0", noDeadline(1, 0, 0, 0), partial.completions().toMap());
    }

    static final String GOOD = "{\"model\":\"erank-4b\",\"fused\":true,\"results\":["
        + "{\"index\":1,\"relevance_score\":0.91,\"rank_score\":8.0,\"answer\":8,\"answer_probability\":0.7,\"status\":\"ok\","
        + "\"hybrid_score\":0.91,\"first_stage_score\":3.2},"
        + "{\"index\":0,\"relevance_score\":0.4,\"rank_score\":2,\"answer\":2,\"answer_probability\":0.5,\"status\":\"truncated_input\","
        + "\"hybrid_score\":0.4,\"first_stage_score\":7.1}]}";

    @Test
    public void decodesAGoodReply() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(200, GOOD, 2);
        assertEquals("erank-4b", response.model());
        assertEquals(Boolean.TRUE, response.fused());
        assertEquals(2, response.results().size());
        RerankResponse.Result first = response.results().get(0);
        assertEquals(1, first.index());
        assertEquals(0.91, first.relevanceScore(), 1e-9);
        assertEquals(8.0, first.rankScore(), 1e-9);
        assertEquals(Integer.valueOf(8), first.answer());
        assertEquals(0.7, first.answerProbability(), 1e-9);
        assertEquals("ok", first.status());
        assertEquals(0.91, first.hybridScore(), 1e-9);
        assertEquals(3.2, first.firstStageScore(), 1e-9);
        assertEquals("truncated_input", response.results().get(1).status());
    }

    @Test
    public void decodesAMinimalUnfusedReply() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(
            200,
            "{\"results\":[{\"index\":0,\"relevance_score\":1.5}]}",
            1
        );
        assertNull(response.model());
        assertNull(response.fused());
        assertNull(response.fusion());
        assertNull(response.results().get(0).hybridScore());
        assertNull(response.results().get(0).answer());
        assertNull(response.results().get(0).reasoning());
        assertNull(response.results().get(0).passage());
    }

    @Test
    public void decodesTheFusionMethodReasoningAndPassage() throws Exception {
        RerankResponse response = RerankCodec.decodeResponse(
            200,
            "{\"fused\":true,\"fusion\":\"rrf\",\"results\":[{\"index\":0,\"relevance_score\":0.03,"
                + "\"reasoning\":\"It defines BM25.\",\"passage\":{\"index\":2,\"start_char\":900,\"end_char\":1400,\"count\":4}}]}",
            1
        );
        assertEquals("rrf", response.fusion());
        RerankResponse.Result result = response.results().get(0);
        assertEquals("It defines BM25.", result.reasoning());
        assertEquals(Map.of("index", 2, "start_char", 900, "end_char", 1400, "count", 4), result.passage());
    }

    private static RerankException decodeError(int status, String body, int n) {
        try {
            RerankCodec.decodeResponse(status, body, n);
        } catch (RerankException e) {
            return e;
        }
        fail("expected a RerankException for " + body);
        return null;
    }

    @Test
    public void non2xxIsAnHttpErrorWithTheServersReason() {
        RerankException e = decodeError(
            422,
            "{\"error\":{\"type\":\"invalid_argument\",\"reason\":\"documents must not be empty\"},\"status\":422}",
            1
        );
        assertEquals(RerankException.HTTP_ERROR, e.type());
        assertTrue(e.getMessage(), e.getMessage().contains("HTTP 422"));
        assertTrue(e.getMessage(), e.getMessage().contains("invalid_argument: documents must not be empty"));

        RerankException html = decodeError(502, "<html>Bad gateway</html>", 1);
        assertEquals(RerankException.HTTP_ERROR, html.type());
        assertTrue(html.getMessage(), html.getMessage().contains("<html>Bad gateway</html>"));
    }

    @Test
    public void malformedReplies() {
        String[] bodies = {
            "not json",
            "[1,2]",
            "{}",
            "{\"results\":{}}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1}]}", // one result for two documents
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":0,\"relevance_score\":0.5}]}", // repeated index
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":2,\"relevance_score\":0.5}]}", // out of range
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1}]}", // no relevance_score
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":\"high\"}]}",
            "{\"results\":[{\"index\":0.5,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"answer\":\"x\"}]}",
            "{\"results\":[1,2]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"reasoning\":7}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"passage\":[1]}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"passage\":{\"index\":1}}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"completion\":2}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"thinking_tokens\":-1}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0,\"thinking_tokens\":\"many\"}]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}],\"completions\":[2]}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}],\"completions\":{\"cut\":1.5}}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}],\"completions\":{\"closing_margin_ms\":-2}}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}],\"completions\":{\"closing_margin_ms\":\"soon\"}}",
            "{\"results\":[{\"index\":0,\"relevance_score\":1},{\"index\":1,\"relevance_score\":0}],\"usage\":{\"cache_hits\":-1}}",
            "",
            null };
        for (String body : bodies) {
            RerankException e = decodeError(200, body, 2);
            assertEquals(body + " -> " + e.getMessage(), RerankException.MALFORMED_RESPONSE, e.type());
        }
    }
}
