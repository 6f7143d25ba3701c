package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.common.xcontent.XContentFactory;
import org.opensearch.common.xcontent.json.JsonXContent;
import org.opensearch.core.xcontent.DeprecationHandler;
import org.opensearch.core.xcontent.NamedXContentRegistry;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchModule;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.PipelineProcessingContext;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

/**
 * The shared rewriting cases ({@code tests/cases/rewrite.json}, on the test classpath as {@code cases/rewrite.json}):
 * each search body is parsed as OpenSearch parses it ({@link SearchModule}, with {@code knn} and {@code hybrid} as
 * {@link RawQuery}s, the plugins not being here), run through {@code erank_window} and {@code erank} against a
 * simulated engine and a scorer that reverses what it is sent, and checked for the query text sent or the skip
 * reason, the number of hits sent and the page returned.
 */
public class RewriteCasesTest {

    private static final int DEFAULT_WINDOW = 8;
    private static final int DEFAULT_HITS = 14;

    private static final NamedXContentRegistry REGISTRY = new NamedXContentRegistry(
        new SearchModule(Settings.EMPTY, Arrays.asList(new ErankPlugin(Settings.EMPTY), new RawQuery.Plugin())).getNamedXContents()
    );

    @Test
    public void everyCase() throws Exception {
        List<?> cases = (List<?>) load().get("cases");
        assertTrue("the file holds cases", cases.size() > 10);
        List<String> failures = new ArrayList<>();
        for (Object c : cases) {
            Map<?, ?> testCase = (Map<?, ?>) c;
            try {
                check(testCase);
            } catch (AssertionError | Exception e) {
                failures.add(testCase.get("name") + ": " + e);
            }
        }
        assertTrue(String.join("\n", failures), failures.isEmpty());
    }

    private static void check(Map<?, ?> testCase) throws Exception {
        int window = intOr(testCase.get("window"), DEFAULT_WINDOW);
        int hits = intOr(testCase.get("hits"), DEFAULT_HITS);
        boolean fieldsMissing = Boolean.TRUE.equals(testCase.get("fields_missing"));
        Map<?, ?> expect = (Map<?, ?>) testCase.get("expect");

        List<Object> options = new ArrayList<>(Arrays.asList("window", window));
        if (testCase.get("options") != null) {
            for (Map.Entry<?, ?> option : ((Map<?, ?>) testCase.get("options")).entrySet()) {
                options.add(option.getKey());
                options.add(option.getValue());
            }
        }
        ErankRerankProcessorTest.FakeTransport scorer = reversing();
        ErankRerankProcessor erank = ErankRerankProcessorTest.processor(scorer, ErankRerankProcessorTest.cfg(options.toArray()));
        if (expect.containsKey("error")) {
            assertEquals(expect.get("error"), refusal(testCase, erank, window, hits, fieldsMissing));
            assertTrue("nothing is sent when refusing", scorer.requests.isEmpty());
            return;
        }
        SearchRequest request = request((Map<?, ?>) testCase.get("body"), (Map<?, ?>) testCase.get("params"));
        PipelineProcessingContext context = new PipelineProcessingContext();
        new ErankWindowProcessor(null, null, false, window).processRequest(request, context);
        SearchResponse out = ErankRerankProcessorTest.run(erank, request, engine(request, hits, fieldsMissing), context);

        Map<String, Object> marker = ErankRerankProcessorTest.marker(out);
        if (expect.containsKey("skip")) {
            assertEquals("skipped", marker.get("status"));
            assertEquals(expect.get("skip"), marker.get("reason"));
            assertTrue("nothing is sent when skipping", scorer.requests.isEmpty());
        } else {
            assertEquals(marker.toString(), "reranked", marker.get("status"));
            assertEquals(1, scorer.requests.size());
            Map<String, Object> sent = scorer.requests.get(0);
            assertEquals(expect.get("query_text"), sent.get("query"));
            assertEquals(expect.get("sent"), ((List<?>) sent.get("documents")).size());
        }
        List<Integer> page = new ArrayList<>();
        for (SearchHit hit : out.getHits().getHits()) {
            page.add(Integer.parseInt(hit.getId().substring(1)));
        }
        assertEquals(expect.get("page"), page);
    }

    /**
     * The reason a search is refused with (a 400): when its body is parsed (a {@code ParsingException}), or when the
     * {@code erank} processor meets its options (an {@code IllegalArgumentException}); {@code null} if it is not.
     */
    private static String refusal(Map<?, ?> testCase, ErankRerankProcessor erank, int window, int hits, boolean fieldsMissing) {
        SearchRequest request;
        try {
            request = request((Map<?, ?>) testCase.get("body"), (Map<?, ?>) testCase.get("params"));
        } catch (Exception e) {
            for (Throwable t = e; t != null; t = t.getCause()) {
                if (t.getMessage() != null && t.getMessage().startsWith("[ext.")) {
                    return t.getMessage(); // the extension's own words, under whatever the parser wrapped it in
                }
            }
            return e.getMessage();
        }
        PipelineProcessingContext context = new PipelineProcessingContext();
        new ErankWindowProcessor(null, null, false, window).processRequest(request, context);
        try {
            ErankRerankProcessorTest.run(erank, request, engine(request, hits, fieldsMissing), context);
        } catch (AssertionError e) {
            if (e.getCause() instanceof IllegalArgumentException) {
                return e.getCause().getMessage();
            }
            throw e;
        }
        return null;
    }

    /** The body parsed as a search's body is; {@code params.scroll} as the URL parameter. */
    private static SearchRequest request(Map<?, ?> body, Map<?, ?> params) throws Exception {
        String json;
        try (XContentBuilder builder = XContentFactory.jsonBuilder()) {
            json = builder.map(toStringKeys(body)).toString();
        }
        SearchSourceBuilder source;
        try (XContentParser parser = JsonXContent.jsonXContent.createParser(REGISTRY, DeprecationHandler.THROW_UNSUPPORTED_OPERATION, json)) {
            source = SearchSourceBuilder.fromXContent(parser);
        }
        SearchRequest request = Fixtures.request(source);
        if (params != null && params.get("scroll") != null) {
            request.scroll(TimeValue.parseTimeValue((String) params.get("scroll"), "scroll"));
        }
        return request;
    }

    /** The engine: hit {@code r} (1-based) scores {@code 100 - r}; it returns {@code [from, from + size)}. */
    private static SearchResponse engine(SearchRequest request, int total, boolean fieldsMissing) {
        SearchSourceBuilder source = request.source();
        int from = Math.max(source.from(), 0);
        int size = source.size() < 0 ? PageRequest.DEFAULT_SIZE : source.size();
        List<SearchHit> hits = new ArrayList<>();
        for (int rank = from + 1; rank <= Math.min(total, from + size); rank++) {
            String json = fieldsMissing ? "{\"other\":\"x\"}" : "{\"title\":\"title " + rank + "\",\"body\":\"body " + rank + "\"}";
            hits.add(Fixtures.hit("r" + rank, 100 - rank, json));
        }
        return Fixtures.response(hits.toArray(new SearchHit[0]));
    }

    /** A scorer that puts the last hit it is sent first. */
    private static ErankRerankProcessorTest.FakeTransport reversing() {
        return new ErankRerankProcessorTest.FakeTransport(request -> {
            int n = ((List<?>) request.get("documents")).size();
            StringBuilder sb = new StringBuilder("{\"results\":[");
            for (int i = n - 1; i >= 0; i--) {
                sb.append("{\"index\":").append(i).append(",\"relevance_score\":").append(i).append(i > 0 ? "}," : "}");
            }
            return new RerankTransport.Reply(200, sb.append("]}").toString());
        });
    }

    private static Map<String, Object> load() throws Exception {
        try (InputStream in = RewriteCasesTest.class.getResourceAsStream("/cases/rewrite.json")) {
            assertNotNull("cases/rewrite.json is on the test classpath (pom.xml testResources: ../../tests/cases)", in);
            return RerankCodec.parseObject(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
    }

    private static Map<String, Object> toStringKeys(Map<?, ?> map) {
        Map<String, Object> out = new HashMap<>();
        map.forEach((k, v) -> out.put(String.valueOf(k), v));
        return out;
    }

    private static int intOr(Object value, int otherwise) {
        return value == null ? otherwise : ((Number) value).intValue();
    }
}
