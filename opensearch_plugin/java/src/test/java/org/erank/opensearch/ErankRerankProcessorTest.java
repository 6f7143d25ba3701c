package org.erank.opensearch;

import org.apache.lucene.search.Explanation;
import org.junit.Test;
import org.opensearch.OpenSearchStatusException;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.core.action.ActionListener;
import org.opensearch.core.rest.RestStatus;
import org.opensearch.index.query.QueryBuilders;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.SearchHit;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.rescore.QueryRescorerBuilder;
import org.opensearch.search.sort.SortOrder;
import org.opensearch.threadpool.Scheduler;

import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiFunction;
import java.util.function.Function;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

public class ErankRerankProcessorTest {

    /** Answers every post with what {@code reply} makes of the request JSON (or fails with what it throws). */
    static final class FakeTransport implements RerankTransport {
        final Function<Map<String, Object>, Reply> reply;
        final List<Map<String, Object>> requests = new ArrayList<>();
        final List<URI> uris = new ArrayList<>();
        ActionListener<Reply> pending;
        boolean hold;

        FakeTransport(Function<Map<String, Object>, Reply> reply) {
            this.reply = reply;
        }

        @Override
        public void post(URI uri, String jsonBody, Duration timeout, ActionListener<Reply> listener) {
            Map<String, Object> request;
            try {
                request = Fixtures.parse(jsonBody);
            } catch (Exception e) {
                throw new AssertionError(e);
            }
            requests.add(request);
            uris.add(uri);
            if (hold) {
                pending = listener;
                return;
            }
            Reply r;
            try {
                r = reply.apply(request);
            } catch (RuntimeException e) {
                listener.onFailure(new RerankException(RerankException.CONNECTION_ERROR, e.getMessage()));
                return;
            }
            listener.onResponse(r);
        }
    }

    /** A server that scores document i by a fixed list, fused, best first. */
    static FakeTransport scoring(double... scores) {
        return new FakeTransport(request -> {
            List<?> docs = (List<?>) request.get("documents");
            List<?> first = (List<?>) request.get("first_stage_scores");
            List<Integer> idx = new ArrayList<>();
            for (int i = 0; i < docs.size(); i++) {
                idx.add(i);
            }
            idx.sort((a, b) -> Double.compare(scores[b], scores[a]));
            StringBuilder sb = new StringBuilder("{\"model\":\"fake\",\"fused\":true,\"results\":[");
            for (int k = 0; k < idx.size(); k++) {
                int i = idx.get(k);
                if (k > 0) {
                    sb.append(',');
                }
                sb.append("{\"index\":").append(i)
                    .append(",\"relevance_score\":").append(scores[i])
                    .append(",\"rank_score\":").append(scores[i] * 10)
                    .append(",\"answer\":").append((int) (scores[i] * 10))
                    .append(",\"answer_probability\":0.5,\"status\":\"ok\",\"hybrid_score\":").append(scores[i]);
                if (first != null) {
                    sb.append(",\"first_stage_score\":").append(first.get(i));
                }
                sb.append('}');
            }
            sb.append("]}");
            return new RerankTransport.Reply(200, sb.toString());
        });
    }

    static ErankRerankProcessor processor(RerankTransport transport, Map<String, Object> extra) {
        return processor(transport, extra, null);
    }

    static ErankRerankProcessor processor(
        RerankTransport transport,
        Map<String, Object> extra,
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler
    ) {
        Map<String, Object> config = new HashMap<>();
        config.put("endpoint", "http://scorer:8080");
        Map<String, Object> context = new HashMap<>();
        context.put("document_fields", Arrays.asList("title", "body"));
        config.put("context", context);
        config.putAll(extra);
        ErankConfig parsed = ErankConfig.parse("erank", null, config);
        return new ErankRerankProcessor(null, null, false, parsed, () -> transport, null, scheduler);
    }

    static Map<String, Object> cfg(Object... kv) {
        Map<String, Object> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static SearchRequest matchRequest() {
        return Fixtures.request(new SearchSourceBuilder().query(QueryBuilders.matchQuery("body", "what is erank")));
    }

    /** Runs the processor and returns the response, failing the test on a listener failure. */
    static SearchResponse run(ErankRerankProcessor p, SearchRequest request, SearchResponse response, PipelineProcessingContext ctx) {
        AtomicReference<SearchResponse> out = new AtomicReference<>();
        AtomicReference<Exception> failure = new AtomicReference<>();
        p.processResponseAsync(request, response, ctx, ActionListener.wrap(out::set, failure::set));
        if (failure.get() != null) {
            throw new AssertionError("listener failed", failure.get());
        }
        assertNotNull("listener answered synchronously", out.get());
        return out.get();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> marker(SearchResponse response) {
        assertNotNull(response.getInternalResponse().getSearchExtBuilders());
        for (SearchExtBuilder ext : response.getInternalResponse().getSearchExtBuilders()) {
            if (ext instanceof ErankSearchExtBuilder) {
                return ((ErankSearchExtBuilder) ext).values();
            }
        }
        return null;
    }

    @Test
    public void reranksTheWindowAndKeepsTheRestBelow() throws Exception {
        FakeTransport transport = scoring(0.1, 0.9, 0.5); // window 3: d1 > d2 > d0
        ErankRerankProcessor p = processor(transport, cfg("window", 3, "alpha", 0.3, "instruction", "Be strict."));
        SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(5)), new PipelineProcessingContext());

        assertEquals(Arrays.asList("d1", "d2", "d0", "d3", "d4"), Fixtures.ids(out));
        SearchHit[] hits = out.getHits().getHits();
        assertEquals(0.9f, hits[0].getScore(), 1e-6);
        assertEquals(0.5f, hits[1].getScore(), 1e-6);
        assertEquals(0.1f, hits[2].getScore(), 1e-6);
        assertEquals("below the window: lowest reranked - 1", 0.1f - 1f, hits[3].getScore(), 1e-6);
        assertEquals("and one less per hit further down", 0.1f - 2f, hits[4].getScore(), 1e-6);
        assertEquals(0.9f, out.getHits().getMaxScore(), 1e-6);
        assertEquals(5L, hitsCount(out));

        Map<String, Object> info = Fixtures.erankInfo(hits[0]);
        assertEquals(4.0f, info.get("bm25_score"));
        assertEquals(2, info.get("bm25_rank"));
        assertEquals(0.9, info.get("relevance_score"));
        assertEquals(9.0, info.get("rank_score"));
        assertEquals(0.9, info.get("hybrid_score"));
        assertEquals(9, info.get("answer"));
        assertEquals("ok", info.get("status"));
        assertFalse(info.containsKey("text_missing"));
        assertFalse(info.containsKey("below_window"));
        Map<String, Object> below = Fixtures.erankInfo(hits[3]);
        assertEquals("the first-stage score stays visible below the window", 2.0f, below.get("bm25_score"));
        assertEquals(4, below.get("bm25_rank"));
        assertEquals(true, below.get("below_window"));
        assertFalse(below.containsKey("relevance_score"));
        assertFalse("nothing written into _source", hits[0].getSourceAsString().contains("erank"));

        Map<String, Object> request = transport.requests.get(0);
        assertEquals("what is erank", request.get("query"));
        assertEquals(Arrays.asList("title d0\nbody d0", "title d1\nbody d1", "title d2\nbody d2"), request.get("documents"));
        assertEquals(3, ((List<?>) request.get("first_stage_scores")).size());
        assertEquals(0.3, ((Number) request.get("alpha")).doubleValue(), 0.0);
        assertEquals("Be strict.", request.get("instruction"));
        assertFalse(request.containsKey("instruction_preset"));
        assertEquals("http://scorer:8080/v1/rerank", transport.uris.get(0).toString());

        Map<String, Object> marker = marker(out);
        assertEquals("reranked", marker.get("status"));
        assertEquals("fake", marker.get("model"));
        assertEquals(true, marker.get("fused"));
        assertEquals(3, marker.get("reranked"));
        assertEquals(3, marker.get("window"));
        assertEquals(7.0, marker.get("first_stage_ms"));
        assertTrue(marker.containsKey("rerank_ms"));
        assertFalse(marker.containsKey("took_ms"));
    }

    @Test
    public void scoresNeverRiseAcrossTheWindowEdge() {
        // the page from=45 of a window of 50: hits 45..49 reranked with negative fused scores, 50..54 below
        double[] fused = new double[50];
        for (int i = 0; i < 50; i++) {
            fused[i] = -0.96 - i * 0.05;
        }
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        PageRequest.of(45, 10, 50).store(ctx);
        SearchHit[] engine = Fixtures.hits(55);
        for (SearchHit hit : engine) {
            hit.score(0.72f + hit.getScore() / 1000f); // BM25 scores far above the fused ones
        }
        float bm25Of50 = engine[50].getScore();
        SearchResponse out = run(processor(scoring(fused), cfg()), matchRequest(), Fixtures.response(engine), ctx);
        SearchHit[] page = out.getHits().getHits();
        assertEquals(10, page.length);
        for (int i = 1; i < page.length; i++) {
            assertTrue("_score at " + i + " rises: " + Fixtures.ids(out), page[i].getScore() < page[i - 1].getScore());
        }
        float lowestReranked = (float) fused[49];
        assertEquals(lowestReranked, page[4].getScore(), 1e-6);
        assertEquals(lowestReranked - 1f, page[5].getScore(), 1e-6);
        assertEquals("d50", page[5].getId());
        assertEquals(bm25Of50, (float) Fixtures.erankInfo(page[5]).get("bm25_score"), 0f);
    }

    @Test
    public void belowWindowScoreStaysBelowEvenWhereFloatsCannotStepByOne() {
        assertEquals(-1.5f, Reorder.belowWindowScore(-0.5f, 0), 0f);
        assertEquals(-3.5f, Reorder.belowWindowScore(-0.5f, 2), 0f);
        float huge = 1e9f;
        assertTrue(Reorder.belowWindowScore(huge, 0) < huge);
    }

    @Test
    public void explanationValueIsTheNewScoreWithTheFusionAsDetails() {
        SearchHit[] engine = Fixtures.hits(3);
        for (SearchHit hit : engine) {
            hit.explanation(Explanation.match(hit.getScore(), "weight(body:erank) [BM25]"));
        }
        SearchResponse out = run(processor(scoring(0.2, 0.8), cfg("window", 2)), matchRequest(), Fixtures.response(engine), new PipelineProcessingContext());
        SearchHit top = out.getHits().getHits()[0];
        Explanation explanation = top.getExplanation();
        assertEquals(top.getScore(), explanation.getValue().floatValue(), 0f);
        assertTrue(explanation.getDescription(), explanation.getDescription().contains("fused"));
        Explanation[] details = explanation.getDetails();
        assertEquals(2, details.length);
        assertEquals("first-stage score", 2.0, details[0].getValue().doubleValue(), 0.0);
        assertEquals("weight(body:erank) [BM25]", details[0].getDetails()[0].getDescription());
        assertEquals("ERank rank_score", 8.0, details[1].getValue().doubleValue(), 1e-9);
        assertTrue(details[1].getDescription(), details[1].getDescription().contains("answer 8"));

        SearchHit below = out.getHits().getHits()[2];
        assertEquals(below.getScore(), below.getExplanation().getValue().floatValue(), 0f);
        assertEquals(1.0, below.getExplanation().getDetails()[0].getValue().doubleValue(), 0.0);
    }

    @Test
    public void tookIncludesTheRerank() {
        FakeTransport slow = scoring(0.2, 0.8);
        RerankTransport sleeping = (uri, body, timeout, listener) -> {
            try {
                Thread.sleep(40);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            slow.post(uri, body, timeout, listener);
        };
        SearchResponse in = Fixtures.response(Fixtures.hits(2));
        SearchResponse out = run(processor(sleeping, cfg()), matchRequest(), in, new PipelineProcessingContext());
        Map<String, Object> marker = marker(out);
        double rerankMs = (Double) marker.get("rerank_ms");
        assertTrue("rerank_ms " + rerankMs, rerankMs >= 40.0);
        assertEquals(7.0, marker.get("first_stage_ms"));
        assertEquals(7 + Math.round(rerankMs), out.getTook().millis());
    }

    @Test
    public void sendsTheInstructionPreset() {
        FakeTransport transport = scoring(0.2, 0.8);
        run(processor(transport, cfg("instruction_preset", "web_search")), matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        Map<String, Object> request = transport.requests.get(0);
        assertEquals("web_search", request.get("instruction_preset"));
        assertFalse(request.containsKey("instruction"));
    }

    private static long hitsCount(SearchResponse out) {
        return out.getHits().getHits().length;
    }

    @Test
    public void theResponseJsonShowsErankFieldsAndExt() throws Exception {
        ErankRerankProcessor p = processor(scoring(0.2, 0.8), cfg());
        SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        Map<String, Object> json = Fixtures.parse(Fixtures.toJson(out, true));
        Map<?, ?> hitsSection = (Map<?, ?>) json.get("hits");
        List<?> hits = (List<?>) hitsSection.get("hits");
        Map<?, ?> first = (Map<?, ?>) hits.get(0);
        assertEquals("d1", first.get("_id"));
        Map<?, ?> fields = (Map<?, ?>) first.get("fields");
        List<?> erank = (List<?>) fields.get("_erank");
        assertEquals(1.0, ((Number) ((Map<?, ?>) erank.get(0)).get("bm25_score")).doubleValue(), 0.0);
        assertFalse(((Map<?, ?>) first.get("_source")).containsKey("_erank"));
        assertFalse("no profile section the search did not ask for", json.containsKey("profile"));
        Map<?, ?> ext = (Map<?, ?>) json.get("ext");
        assertEquals("reranked", ((Map<?, ?>) ext.get("erank")).get("status"));
    }

    @Test
    public void cutsTheUsersPageFromTheRerankedOrder() {
        // window 4 over 6 hits; relevance reverses the window: d3 d2 d1 d0 | d4 d5
        List<String> all = new ArrayList<>();
        for (int from = 0; from < 4; from += 2) {
            PipelineProcessingContext ctx = new PipelineProcessingContext();
            PageRequest.of(from, 2, 4).store(ctx);
            ErankRerankProcessor p = processor(scoring(0.1, 0.2, 0.3, 0.4), cfg("window", 4));
            SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(6)), ctx);
            assertEquals(2, out.getHits().getHits().length);
            all.addAll(Fixtures.ids(out));
        }
        // the page past the window: erank_window left the search alone, the engine returned just d4 d5
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        PageRequest.of(4, 2, 4).store(ctx);
        SearchHit[] hits = Fixtures.hits(6);
        SearchResponse past = run(processor(scoring(0.1, 0.2), cfg("window", 4)), matchRequest(), Fixtures.response(hits[4], hits[5]), ctx);
        all.addAll(Fixtures.ids(past));
        assertEquals(Arrays.asList("d3", "d2", "d1", "d0", "d4", "d5"), all);
    }

    @Test
    public void aPageWhollyPastTheWindowIsNotSentToTheServer() {
        FakeTransport transport = scoring(0.1, 0.2);
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        PageRequest.of(200, 2, 50).store(ctx);
        SearchHit[] hits = Fixtures.hits(2);
        SearchResponse out = run(processor(transport, cfg()), matchRequest(), Fixtures.response(hits), ctx);
        assertTrue(transport.requests.isEmpty());
        assertEquals(Arrays.asList("d0", "d1"), Fixtures.ids(out));
        assertEquals(2f, out.getHits().getHits()[0].getScore(), 0f);
        assertNull(Fixtures.erankInfo(out.getHits().getHits()[0]));
        assertEquals("skipped", marker(out).get("status"));
        assertEquals("past_window", marker(out).get("reason"));

        // erank's own window smaller than erank_window's: the search was fetched from the top, the page is still cut
        PipelineProcessingContext wide = new PipelineProcessingContext();
        PageRequest.of(4, 2, 50).store(wide);
        SearchResponse cut = run(processor(transport, cfg("window", 3)), matchRequest(), Fixtures.response(Fixtures.hits(6)), wide);
        assertTrue(transport.requests.isEmpty());
        assertEquals(Arrays.asList("d4", "d5"), Fixtures.ids(cut));
        assertEquals("past_window", marker(cut).get("reason"));

        // past the last hit as well: still past the window, as the proxy says
        SearchResponse empty = run(processor(transport, cfg()), matchRequest(), Fixtures.response(), ctx);
        assertEquals("past_window", marker(empty).get("reason"));
    }

    @Test
    public void noTextOnAnyHitSkipsTheCall() {
        FakeTransport transport = scoring(0.1, 0.2);
        SearchResponse in = Fixtures.response(Fixtures.hit("d0", 2f, "{\"other\":\"x\"}"), Fixtures.hit("d1", 1f, null));
        SearchResponse out = run(processor(transport, cfg()), matchRequest(), in, new PipelineProcessingContext());
        assertTrue("no call to rank empty strings", transport.requests.isEmpty());
        assertEquals(Arrays.asList("d0", "d1"), Fixtures.ids(out));
        Map<String, Object> marker = marker(out);
        assertEquals("skipped", marker.get("status"));
        assertEquals("no_text", marker.get("reason"));
        assertEquals(Arrays.asList("title", "body"), marker.get("document_fields"));
    }

    @Test
    public void effectiveWindowIsTheSmallerOfRequestAndResponseWindows() {
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        PageRequest.of(0, 10, 2).store(ctx);
        FakeTransport transport = scoring(0.1, 0.9);
        ErankRerankProcessor p = processor(transport, cfg("window", 50));
        SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(5)), ctx);
        assertEquals(2, ((List<?>) transport.requests.get(0).get("documents")).size());
        assertEquals(Arrays.asList("d1", "d0", "d2", "d3", "d4"), Fixtures.ids(out));
        assertEquals(2, marker(out).get("window"));
        assertEquals(0.1f - 1f, out.getHits().getHits()[2].getScore(), 1e-6);
    }

    @Test
    public void hitWithoutTextIsScoredOnEmptyTextAndMarked() {
        FakeTransport transport = scoring(0.3, 0.6);
        SearchHit noText = Fixtures.hit("d1", 1f, "{\"other\":\"x\"}");
        SearchResponse out = run(
            processor(transport, cfg()),
            matchRequest(),
            Fixtures.response(Fixtures.hit("d0", 2f), noText),
            new PipelineProcessingContext()
        );
        assertEquals(Arrays.asList("d1", "d0"), Fixtures.ids(out));
        assertEquals("", ((List<?>) transport.requests.get(0).get("documents")).get(1));
        assertEquals(true, Fixtures.erankInfo(out.getHits().getHits()[0]).get("text_missing"));
        assertEquals(1, marker(out).get("text_missing"));
    }

    private void assertFailOpen(RerankTransport transport, String expectedType) {
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        PageRequest.of(1, 2, 50).store(ctx);
        SearchResponse in = Fixtures.response(Fixtures.hits(5));
        SearchResponse out = run(processor(transport, cfg()), matchRequest(), in, ctx);
        assertEquals("engine order, cut to the page", Arrays.asList("d1", "d2"), Fixtures.ids(out));
        assertEquals(4f, out.getHits().getHits()[0].getScore(), 0f);
        assertEquals(5f, out.getHits().getMaxScore(), 0f);
        for (SearchHit hit : out.getHits().getHits()) {
            assertNull("no _erank on failure", Fixtures.erankInfo(hit));
        }
        Map<String, Object> marker = marker(out);
        assertEquals("failed", marker.get("status"));
        assertEquals(true, marker.get("fail_open"));
        assertEquals(expectedType, ((Map<?, ?>) marker.get("error")).get("type"));
        assertEquals(7.0, marker.get("first_stage_ms"));
        assertTrue(marker.containsKey("rerank_ms"));
    }

    @Test
    public void failsOpenOnConnectionError() {
        assertFailOpen(new FakeTransport(r -> { throw new RuntimeException("connection refused"); }), "connection_error");
    }

    @Test
    public void failsOpenOnHttpError() {
        assertFailOpen(
            new FakeTransport(r -> new RerankTransport.Reply(503, "{\"error\":{\"type\":\"unavailable\",\"reason\":\"loading\"},\"status\":503}")),
            "http_error"
        );
    }

    @Test
    public void failsOpenOnMalformedReply() {
        assertFailOpen(new FakeTransport(r -> new RerankTransport.Reply(200, "{\"results\":[]}")), "malformed_response");
    }

    @Test
    public void skipsWithoutQueryText() {
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        SearchRequest request = Fixtures.request(new SearchSourceBuilder().query(QueryBuilders.matchAllQuery()));
        FakeTransport transport = scoring(1, 2);
        SearchResponse out = run(processor(transport, cfg()), request, Fixtures.response(Fixtures.hits(2)), ctx);
        assertEquals(Arrays.asList("d0", "d1"), Fixtures.ids(out));
        assertEquals("skipped", marker(out).get("status"));
        assertEquals("no_query_text", marker(out).get("reason"));
        assertTrue(transport.requests.isEmpty());
    }

    @Test
    public void failsOpenOnTheDeadlineAndIgnoresTheLateReply() {
        FakeTransport transport = scoring(0.1, 0.9);
        transport.hold = true;
        List<Runnable> scheduled = new ArrayList<>();
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler = (delay, task) -> {
            scheduled.add(task);
            return null;
        };
        ErankRerankProcessor p = processor(transport, cfg("timeout", "1s"), scheduler);
        AtomicReference<SearchResponse> out = new AtomicReference<>();
        List<Object> calls = new ArrayList<>();
        p.processResponseAsync(matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext(), ActionListener.wrap(r -> {
            calls.add(r);
            out.set(r);
        }, calls::add));
        assertTrue(calls.isEmpty());
        assertEquals(1, scheduled.size());
        scheduled.get(0).run(); // the deadline fires
        assertEquals(1, calls.size());
        assertEquals("timeout", ((Map<?, ?>) marker(out.get()).get("error")).get("type"));
        assertEquals(Arrays.asList("d0", "d1"), Fixtures.ids(out.get()));
        transport.pending.onResponse(transport.reply.apply(transport.requests.get(0))); // late reply
        assertEquals("answered once", 1, calls.size());
    }

    @Test
    public void failOpenFalseReportsTheError() {
        FakeTransport transport = new FakeTransport(r -> new RerankTransport.Reply(500, "boom"));
        ErankRerankProcessor p = processor(transport, cfg("fail_open", false));
        AtomicReference<Exception> failure = new AtomicReference<>();
        p.processResponseAsync(matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext(), ActionListener.wrap(r -> {
            throw new AssertionError("expected a failure");
        }, failure::set));
        assertTrue(failure.get() instanceof OpenSearchStatusException);
        assertEquals(RestStatus.BAD_GATEWAY, ((OpenSearchStatusException) failure.get()).status());
        assertTrue(failure.get().getMessage(), failure.get().getMessage().contains("http_error"));
    }

    @Test
    public void skipsFieldSortsAndEmptyResults() {
        FakeTransport transport = scoring(0.1, 0.9);
        SearchRequest sorted = Fixtures.request(
            new SearchSourceBuilder().query(QueryBuilders.matchQuery("b", "q")).sort("date", SortOrder.ASC)
        );
        SearchResponse out = run(processor(transport, cfg()), sorted, Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        assertEquals(Arrays.asList("d0", "d1"), Fixtures.ids(out));
        assertEquals("skipped", marker(out).get("status"));
        assertEquals("sort", marker(out).get("reason"));

        SearchResponse empty = run(processor(transport, cfg()), matchRequest(), Fixtures.response(), new PipelineProcessingContext());
        assertEquals(0, empty.getHits().getHits().length);
        assertEquals("no_hits", marker(empty).get("reason"));
        assertTrue(transport.requests.isEmpty());
    }

    @Test
    public void replacesAnEarlierErankMarker() {
        SearchResponse first = run(processor(scoring(0.1, 0.9), cfg()), matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        SearchResponse second = run(processor(scoring(0.9, 0.1), cfg()), matchRequest(), first, new PipelineProcessingContext());
        int count = 0;
        for (SearchExtBuilder ext : second.getInternalResponse().getSearchExtBuilders()) {
            if (ext instanceof ErankSearchExtBuilder) {
                count++;
            }
        }
        assertEquals(1, count);
    }

    /**
     * A server of the new contract: says which fusion it used, always sends a reasoning (whether asked or not, so the
     * tests see the processor drop what was not asked for), and a passage when asked for best passages.
     */
    static FakeTransport explaining() {
        return new FakeTransport(request -> {
            int n = ((List<?>) request.get("documents")).size();
            Object fusion = request.getOrDefault("fusion", "zscore");
            StringBuilder sb = new StringBuilder("{\"model\":\"fake\",\"fused\":true,\"fusion\":\"" + fusion + "\",\"results\":[");
            for (int i = n - 1; i >= 0; i--) { // the last document first
                sb.append("{\"index\":").append(i).append(",\"relevance_score\":").append(i).append(",\"rank_score\":").append(i * 2);
                sb.append(",\"hybrid_score\":").append(i).append(",\"reasoning\":\"doc ").append(i).append(" fits\"");
                if ("best_passage".equals(request.get("long_documents"))) {
                    sb.append(",\"passage\":{\"index\":1,\"start_char\":10,\"end_char\":20,\"count\":3}");
                }
                sb.append(i > 0 ? "}," : "}");
            }
            return new RerankTransport.Reply(200, sb.append("]}").toString());
        });
    }

    static SearchRequest withExt(SearchRequest request, Object... kv) {
        request.source().ext(Collections.singletonList(new ErankSearchExtBuilder(cfg(kv))));
        return request;
    }

    @Test
    public void sendsTheScoringOptionsAndMarksTheFusionTheServerUsed() {
        FakeTransport transport = explaining();
        ErankRerankProcessor p = processor(
            transport,
            cfg("fusion", "rrf", "rank_constant", 20, "long_documents", "best_passage", "passage_overlap", 8)
        );
        SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(3)), new PipelineProcessingContext());
        Map<String, Object> request = transport.requests.get(0);
        assertEquals("rrf", request.get("fusion"));
        assertEquals(20, request.get("rank_constant"));
        assertEquals("best_passage", request.get("long_documents"));
        assertEquals(8, request.get("passage_overlap"));
        assertFalse("no reasoning unless someone reads it", request.containsKey("return_reasoning"));
        assertEquals("rrf", marker(out).get("fusion"));
        Map<String, Object> info = Fixtures.erankInfo(out.getHits().getHits()[0]);
        assertEquals(Map.of("index", 1, "start_char", 10, "end_char", 20, "count", 3), info.get("passage"));
        assertFalse("the server's unasked reasoning is dropped", info.containsKey("reasoning"));
    }

    @Test
    public void theSearchExtOverridesTheProcessorsOptions() {
        FakeTransport transport = explaining();
        ErankRerankProcessor p = processor(transport, cfg("fusion", "rrf", "rank_constant", 20));
        SearchRequest request = withExt(matchRequest(), "fusion", "minmax", "long_documents", "truncate");
        SearchResponse out = run(p, request, Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        Map<String, Object> sent = transport.requests.get(0);
        assertEquals("minmax", sent.get("fusion"));
        assertEquals("the processor's value where the search says nothing", 20, sent.get("rank_constant"));
        assertEquals("truncate", sent.get("long_documents"));
        assertEquals("minmax", marker(out).get("fusion"));
        assertFalse(Fixtures.erankInfo(out.getHits().getHits()[0]).containsKey("passage"));
    }

    /** A server that answers in the input order with the given completions, its counts, and 9 thinking tokens per cut. */
    static FakeTransport completing(String... completions) {
        return new FakeTransport(request -> {
            StringBuilder sb = new StringBuilder("{\"model\":\"fake\",\"fused\":false,\"results\":[");
            int cut = 0;
            int unscored = 0;
            for (int i = 0; i < completions.length; i++) {
                boolean isCut = "cut".equals(completions[i]);
                cut += isCut ? 1 : 0;
                unscored += "unscored".equals(completions[i]) ? 1 : 0;
                sb.append(i > 0 ? "," : "").append("{\"index\":").append(i).append(",\"relevance_score\":").append(10 - i);
                sb.append(",\"rank_score\":").append(10 - i).append(",\"completion\":\"").append(completions[i]).append('"');
                sb.append(",\"thinking_tokens\":").append(isCut ? 9 : 0).append('}');
            }
            sb.append("],\"completions\":{\"full\":").append(completions.length - cut - unscored).append(",\"cut\":").append(cut);
            sb.append(",\"unscored\":").append(unscored).append(",\"cached\":1,\"deadline_ms\":900,\"closing_margin_ms\":40.0}}");
            return new RerankTransport.Reply(200, sb.toString());
        });
    }

    @Test
    public void sendsTheTimeoutLessTheOverheadAsTheBudget() {
        FakeTransport transport = scoring(0.1, 0.9, 0.5);
        ErankRerankProcessor p = processor(transport, cfg("timeout", "2s"));
        long expected = p.overhead().budgetMillis();
        assertEquals("the seeds: 20 ms after the reply, 30 ms for the exchange", 2_000 - 50, expected);
        SearchResponse out = run(p, matchRequest(), Fixtures.response(Fixtures.hits(3)), new PipelineProcessingContext());
        Map<String, Object> sent = transport.requests.get(0);
        assertEquals((int) expected, sent.get("budget_ms"));
        assertEquals("cut", sent.get("on_budget"));
        assertFalse(sent.containsKey("finish_in_background"));
        assertTrue("the rewrite was measured", p.overhead().nanos() != 50 * 1_000_000L);

        Map<String, Object> marker = marker(out);
        assertEquals("reranked", marker.get("status"));
        assertEquals(
            Map.of("full", 3, "cut", 0, "unscored", 0, "cached", 0, "deadline_ms", 0, "closing_margin_ms", 0.0),
            marker.get("completions")
        );
        for (SearchHit hit : out.getHits().getHits()) {
            assertEquals("an older REST front's results are full", "full", Fixtures.erankInfo(hit).get("completion"));
        }
        long measured = p.overhead().budgetMillis();
        assertEquals(2_000 - (long) Math.ceil(p.overhead().nanos() / 1e6), measured, 1);
        run(p, matchRequest(), Fixtures.response(Fixtures.hits(3)), new PipelineProcessingContext());
        assertEquals("the next call: what was measured", (int) measured, transport.requests.get(1).get("budget_ms"));
    }

    @Test
    public void theSearchChoosesWhatHappensAtTheBudget() {
        FakeTransport transport = scoring(0.1, 0.9);
        ErankRerankProcessor p = processor(transport, cfg());
        run(p, withExt(matchRequest(), "on_budget", "fail_open"), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        Map<String, Object> sent = transport.requests.get(0);
        assertEquals("fail_open", sent.get("on_budget"));
        assertFalse("today's behaviour: no budget", sent.containsKey("budget_ms"));

        FakeTransport other = scoring(0.1, 0.9);
        ErankRerankProcessor failOpen = processor(other, cfg("on_budget", "fail_open"));
        run(failOpen, matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        SearchRequest request = withExt(matchRequest(), "on_budget", "cut", "finish_in_background", true);
        long budget = failOpen.overhead().budgetMillis(); // the rewrite of the first call measured, whatever its on_budget
        run(failOpen, request, Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        assertEquals("fail_open", other.requests.get(0).get("on_budget"));
        assertFalse(other.requests.get(0).containsKey("budget_ms"));
        assertEquals("cut", other.requests.get(1).get("on_budget"));
        assertEquals((int) budget, other.requests.get(1).get("budget_ms"));
        assertEquals(true, other.requests.get(1).get("finish_in_background"));
    }

    @Test
    public void cutAndUnscoredHitsAreRerankedAndMarked() {
        SearchHit[] engine = Fixtures.hits(4);
        for (SearchHit hit : engine) {
            hit.explanation(Explanation.match(hit.getScore(), "weight(body:erank) [BM25]"));
        }
        SearchRequest request = matchRequest();
        request.source().explain(true);
        ErankRerankProcessor p = processor(completing("full", "cut", "unscored"), cfg("window", 3));
        SearchResponse out = run(p, request, Fixtures.response(engine), new PipelineProcessingContext());
        Map<String, Object> marker = marker(out);
        assertEquals("reranked, not failed open", "reranked", marker.get("status"));
        assertEquals(
            Map.of("full", 1, "cut", 1, "unscored", 1, "cached", 1, "deadline_ms", 900, "closing_margin_ms", 40.0),
            marker.get("completions")
        );
        SearchHit[] hits = out.getHits().getHits();
        assertEquals("full", Fixtures.erankInfo(hits[0]).get("completion"));
        assertEquals(0, Fixtures.erankInfo(hits[0]).get("thinking_tokens"));
        assertEquals("cut", Fixtures.erankInfo(hits[1]).get("completion"));
        assertEquals(9, Fixtures.erankInfo(hits[1]).get("thinking_tokens"));
        assertEquals("unscored", Fixtures.erankInfo(hits[2]).get("completion"));
        assertFalse(Fixtures.erankInfo(hits[3]).containsKey("completion"));
        String cut = hits[1].getExplanation().getDetails()[1].getDescription();
        assertTrue(cut, cut.endsWith(", reasoning cut at the call's budget after 9 thinking tokens"));
        String unscored = hits[2].getExplanation().getDetails()[1].getDescription();
        assertTrue(unscored, unscored.endsWith(", not scored within the call's budget"));
        assertFalse(hits[0].getExplanation().getDetails()[1].getDescription().contains("budget"));
    }

    @Test
    public void aTimeoutWithABudgetWidensTheNextCallsMargin() {
        FakeTransport transport = scoring(0.1, 0.9);
        transport.hold = true;
        List<Runnable> scheduled = new ArrayList<>();
        List<Long> delays = new ArrayList<>();
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler = (delay, task) -> {
            delays.add(delay);
            scheduled.add(task);
            return null;
        };
        ErankRerankProcessor p = processor(transport, cfg("timeout", "1s"), scheduler);
        List<Object> calls = new ArrayList<>();
        p.processResponseAsync(matchRequest(), Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext(), ActionListener.wrap(calls::add, calls::add));
        assertEquals(950, transport.requests.get(0).get("budget_ms"));
        assertEquals("the call's deadline stays the whole timeout", Arrays.asList(1_000L), delays);
        scheduled.get(0).run();
        assertEquals("timeout", ((Map<?, ?>) marker((SearchResponse) calls.get(0)).get("error")).get("type"));
        // a margin of 50 ms was too little: the exchange's first sample is 100 ms, its estimate 100 + 4 x 50
        assertEquals(1_000 - 20 - 300, p.overhead().budgetMillis());
    }

    @Test
    public void explainAsksForTheReasoningAndShowsIt() {
        FakeTransport transport = explaining();
        SearchHit[] engine = Fixtures.hits(3);
        for (SearchHit hit : engine) {
            hit.explanation(Explanation.match(hit.getScore(), "weight(body:erank) [BM25]"));
        }
        SearchRequest request = matchRequest();
        request.source().explain(true);
        SearchResponse out = run(processor(transport, cfg("window", 2)), request, Fixtures.response(engine), new PipelineProcessingContext());
        assertEquals(true, transport.requests.get(0).get("return_reasoning"));
        SearchHit top = out.getHits().getHits()[0];
        assertEquals("d1", top.getId());
        assertEquals("doc 1 fits", Fixtures.erankInfo(top).get("reasoning"));
        Explanation explanation = top.getExplanation();
        assertEquals("the value is still the _score", top.getScore(), explanation.getValue().floatValue(), 0f);
        assertTrue(explanation.getDescription(), explanation.getDescription().contains("zscore fusion"));
        Explanation reasoning = explanation.getDetails()[explanation.getDetails().length - 1];
        assertEquals("ERank reasoning: doc 1 fits", reasoning.getDescription());
        assertEquals("valued at the rank_score it led to", 2.0, reasoning.getValue().doubleValue(), 0.0);
        SearchHit below = out.getHits().getHits()[2];
        assertFalse("below the window nothing was judged", Fixtures.erankInfo(below).containsKey("reasoning"));
    }

    @Test
    public void reasoningWithoutExplainGoesToTheHitsOnly() {
        for (ErankRerankProcessor p : new ErankRerankProcessor[] {
            processor(explaining(), cfg("explain_reasoning", true)),
            processor(explaining(), cfg()) }) {
            SearchRequest request = p.config().options().reasoning() ? matchRequest() : withExt(matchRequest(), "explain", true);
            SearchResponse out = run(p, request, Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
            SearchHit top = out.getHits().getHits()[0];
            assertEquals("doc 1 fits", Fixtures.erankInfo(top).get("reasoning"));
            assertNull("no explain, no _explanation", top.getExplanation());
        }
    }

    @Test
    public void rescoresAndAggregationOnlySearchesAreSkipped() {
        FakeTransport transport = explaining();
        SearchRequest rescored = matchRequest();
        rescored.source().addRescorer(new QueryRescorerBuilder(QueryBuilders.matchQuery("body", "x")));
        SearchResponse out = run(processor(transport, cfg()), rescored, Fixtures.response(Fixtures.hits(2)), new PipelineProcessingContext());
        assertEquals("rescore", marker(out).get("reason"));
        SearchRequest aggregationsOnly = matchRequest();
        aggregationsOnly.source().size(0);
        out = run(processor(transport, cfg()), aggregationsOnly, Fixtures.response(), new PipelineProcessingContext());
        assertEquals("size_zero", marker(out).get("reason"));
        assertTrue(transport.requests.isEmpty());
    }

    @Test(expected = UnsupportedOperationException.class)
    public void synchronousPathIsRefused() throws Exception {
        processor(scoring(1), cfg()).processResponse(matchRequest(), Fixtures.response(Fixtures.hits(1)));
    }
}
