package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.AbstractProcessor;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchRequestProcessor;
import org.opensearch.search.pipeline.StatefulSearchRequestProcessor;

import java.util.Map;

/**
 * Request processor {@code erank_window}: asks the engine for {@code from=0, size=max(window, from+size)} and
 * remembers the user's {@code from}/{@code size} in the pipeline's per-request attributes. The {@code erank}
 * response processor then reranks the top {@code window} hits and cuts the user's page, so consecutive pages
 * neither overlap nor skip hits (OpenSearch issue #6722). Use both in one pipeline:
 *
 * <pre>
 * "request_processors":  [{"erank_window": {"window": 50}}],
 * "response_processors": [{"erank": {"endpoint": "...", "context": {...}, "window": 50}}]
 * </pre>
 *
 * Scrolls, {@code search_after}, field sorts, rescores and {@code size: 0} are left alone
 * ({@link PageRequest#skipReason}). A page that starts at or past the window goes out unchanged too: it shows no reranked hit, so
 * fetching the window for it would be wasted.
 */
public final class ErankWindowProcessor extends AbstractProcessor implements StatefulSearchRequestProcessor {

    public static final String TYPE = "erank_window";

    private final int window;

    ErankWindowProcessor(String tag, String description, boolean ignoreFailure, int window) {
        super(tag, description, ignoreFailure);
        this.window = window;
    }

    @Override
    public String getType() {
        return TYPE;
    }

    public int window() {
        return window;
    }

    @Override
    public SearchRequest processRequest(SearchRequest request, PipelineProcessingContext context) {
        if (PageRequest.skipReason(request) != null) {
            return request;
        }
        SearchSourceBuilder source = request.source();
        if (source == null) {
            source = new SearchSourceBuilder();
            request.source(source);
        }
        int from = source.from() < 0 ? PageRequest.DEFAULT_FROM : source.from();
        int size = source.size() < 0 ? PageRequest.DEFAULT_SIZE : source.size();
        PageRequest page = PageRequest.of(from, size, window);
        page.store(context);
        if (page.fetchedFromTop()) {
            source.from(0);
            source.size(Reorder.fetchSize(window, from, size));
        }
        return request;
    }

    /** Reads {@code window} (1..10000, default 50). */
    static final class Factory implements Processor.Factory<SearchRequestProcessor> {
        @Override
        public ErankWindowProcessor create(
            Map<String, Processor.Factory<SearchRequestProcessor>> processorFactories,
            String tag,
            String description,
            boolean ignoreFailure,
            Map<String, Object> config,
            Processor.PipelineContext pipelineContext
        ) {
            Object value = config.remove(ErankConfig.WINDOW);
            int window = ErankConfig.DEFAULT_WINDOW;
            if (value != null) {
                try {
                    window = value instanceof Number && ((Number) value).doubleValue() == ((Number) value).intValue()
                        ? ((Number) value).intValue()
                        : Integer.parseInt(String.valueOf(value).trim());
                } catch (NumberFormatException e) {
                    throw ErankConfig.error(TYPE, tag, ErankConfig.WINDOW, "must be an integer, got [" + value + "]");
                }
            }
            if (window < 1 || window > ErankConfig.MAX_WINDOW) {
                throw ErankConfig.error(TYPE, tag, ErankConfig.WINDOW, "must be between 1 and " + ErankConfig.MAX_WINDOW + ", got " + window);
            }
            return new ErankWindowProcessor(tag, description, ignoreFailure, window);
        }
    }
}
