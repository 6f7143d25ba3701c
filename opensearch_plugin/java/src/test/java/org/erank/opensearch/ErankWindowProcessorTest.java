package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.OpenSearchParseException;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.index.query.QueryBuilders;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.sort.SortOrder;

import java.util.HashMap;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

public class ErankWindowProcessorTest {

    private static ErankWindowProcessor processor(Object window) {
        Map<String, Object> config = new HashMap<>();
        if (window != null) {
            config.put("window", window);
        }
        ErankWindowProcessor p = new ErankWindowProcessor.Factory().create(null, "w", null, false, config, null);
        assertTrue(config.isEmpty());
        return p;
    }

    @Test
    public void fetchesTheWindowAndRemembersThePage() throws Exception {
        SearchRequest request = Fixtures.request(new SearchSourceBuilder().query(QueryBuilders.matchQuery("b", "q")).from(20).size(10));
        PipelineProcessingContext context = new PipelineProcessingContext();
        processor(50).processRequest(request, context);
        assertEquals(0, request.source().from());
        assertEquals(50, request.source().size());
        PageRequest page = PageRequest.load(context);
        assertEquals(20, page.from());
        assertEquals(10, page.size());
        assertEquals(50, page.window());
    }

    @Test
    public void pagesAcrossTheWindowEdgeFetchFromPlusSize() throws Exception {
        SearchRequest request = Fixtures.request(new SearchSourceBuilder().from(45).size(10));
        PipelineProcessingContext context = new PipelineProcessingContext();
        processor(50).processRequest(request, context);
        assertEquals(0, request.source().from());
        assertEquals(55, request.source().size());
        assertTrue(PageRequest.load(context).fetchedFromTop());
    }

    @Test
    public void pagesWhollyPastTheWindowGoOutUnchanged() throws Exception {
        for (int from : new int[] { 50, 200 }) {
            SearchRequest request = Fixtures.request(new SearchSourceBuilder().from(from).size(10));
            PipelineProcessingContext context = new PipelineProcessingContext();
            processor(50).processRequest(request, context);
            assertEquals(from, request.source().from());
            assertEquals(10, request.source().size());
            PageRequest page = PageRequest.load(context);
            assertEquals(from, page.from());
            assertFalse("the engine returns just the page", page.fetchedFromTop());
        }
    }

    @Test
    public void defaultsFromSizeAndWindow() throws Exception {
        SearchRequest request = Fixtures.request(new SearchSourceBuilder());
        PipelineProcessingContext context = new PipelineProcessingContext();
        processor(null).processRequest(request, context);
        assertEquals(50, request.source().size());
        PageRequest page = PageRequest.load(context);
        assertEquals(0, page.from());
        assertEquals(10, page.size());

        SearchRequest noSource = new SearchRequest("i");
        PipelineProcessingContext context2 = new PipelineProcessingContext();
        processor(5).processRequest(noSource, context2);
        assertEquals(10, noSource.source().size());
    }

    @Test
    public void leavesScrollsSearchAfterFieldSortsAndSizeZeroAlone() throws Exception {
        SearchRequest[] requests = {
            Fixtures.request(new SearchSourceBuilder().size(10)).scroll(TimeValue.timeValueMinutes(1)),
            Fixtures.request(new SearchSourceBuilder().size(10).sort("date", SortOrder.DESC).searchAfter(new Object[] { 1L })),
            Fixtures.request(new SearchSourceBuilder().size(10).sort("date", SortOrder.DESC)),
            Fixtures.request(new SearchSourceBuilder().size(0)) };
        for (SearchRequest request : requests) {
            PipelineProcessingContext context = new PipelineProcessingContext();
            int sizeBefore = request.source().size();
            processor(50).processRequest(request, context);
            assertEquals(sizeBefore, request.source().size());
            assertNull(PageRequest.load(context));
        }
        SearchRequest scoreSorted = Fixtures.request(new SearchSourceBuilder().size(10).sort("_score", SortOrder.DESC));
        PipelineProcessingContext context = new PipelineProcessingContext();
        processor(50).processRequest(scoreSorted, context);
        assertEquals(50, scoreSorted.source().size());
    }

    @Test
    public void validatesWindow() {
        for (Object bad : new Object[] { 0, 10_001, "x", 1.5 }) {
            try {
                processor(bad);
                fail(String.valueOf(bad));
            } catch (OpenSearchParseException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("[window]"));
            }
        }
        assertEquals(7, processor("7").window());
    }
}
