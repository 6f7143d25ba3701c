package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.sort.ScoreSortBuilder;
import org.opensearch.search.sort.SortBuilder;

import java.util.List;

/**
 * The user's page, remembered by {@code erank_window} in the pipeline's per-request attributes so that the
 * {@code erank} response processor can cut it from the reranked order.
 */
public final class PageRequest {

    public static final String ATTR_FROM = "erank.from";
    public static final String ATTR_SIZE = "erank.size";
    public static final String ATTR_WINDOW = "erank.window";

    static final int DEFAULT_FROM = 0;
    static final int DEFAULT_SIZE = 10;

    private final int from;
    private final int size;
    private final int window;

    PageRequest(int from, int size, int window) {
        this.from = from;
        this.size = size;
        this.window = window;
    }

    public int from() {
        return from;
    }

    public int size() {
        return size;
    }

    /** The window {@code erank_window} fetched for. */
    public int window() {
        return window;
    }

    void store(PipelineProcessingContext context) {
        context.setAttribute(ATTR_FROM, from);
        context.setAttribute(ATTR_SIZE, size);
        context.setAttribute(ATTR_WINDOW, window);
    }

    /** {@code null} when no {@code erank_window} processor ran for this request. */
    static PageRequest load(PipelineProcessingContext context) {
        if (context == null) {
            return null;
        }
        Object from = context.getAttribute(ATTR_FROM);
        Object size = context.getAttribute(ATTR_SIZE);
        Object window = context.getAttribute(ATTR_WINDOW);
        if (from instanceof Integer && size instanceof Integer && window instanceof Integer) {
            return new PageRequest((Integer) from, (Integer) size, (Integer) window);
        }
        return null;
    }

    /**
     * Why this request is left alone by both processors, or {@code null}: scrolls and {@code search_after} pages
     * are defined by the engine's own order, and a field sort has no relevance order to refine.
     */
    static String skipReason(SearchRequest request) {
        if (request.scroll() != null) {
            return "scroll";
        }
        SearchSourceBuilder source = request.source();
        if (source == null) {
            return null;
        }
        if (source.searchAfter() != null && source.searchAfter().length > 0) {
            return "search_after";
        }
        List<SortBuilder<?>> sorts = source.sorts();
        if (sorts != null) {
            for (SortBuilder<?> sort : sorts) {
                if (sort instanceof ScoreSortBuilder == false) {
                    return "sorted_by_field";
                }
            }
        }
        return null;
    }
}
