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
 *
 * <p>A page that starts at or past the window shows no reranked hit: {@code erank_window} then leaves the search
 * alone ({@link #fetchedFromTop()} is false, the engine returns just the page) and {@code erank} does not call
 * the scoring server.
 */
public final class PageRequest {

    public static final String ATTR_FROM = "erank.from";
    public static final String ATTR_SIZE = "erank.size";
    public static final String ATTR_WINDOW = "erank.window";
    public static final String ATTR_FETCHED_FROM_TOP = "erank.fetched_from_top";

    /** Skip reasons, named as the query proxy names them ({@code connector/rewrite/search.py}). */
    static final String SKIP_SCROLL = "scroll";
    static final String SKIP_SEARCH_AFTER = "search_after";
    static final String SKIP_SORT = "sort";
    static final String SKIP_RESCORE = "rescore";
    static final String SKIP_SIZE_ZERO = "size_zero";

    static final int DEFAULT_FROM = 0;
    static final int DEFAULT_SIZE = 10;

    private final int from;
    private final int size;
    private final int window;
    private final boolean fetchedFromTop;

    PageRequest(int from, int size, int window, boolean fetchedFromTop) {
        this.from = from;
        this.size = size;
        this.window = window;
        this.fetchedFromTop = fetchedFromTop;
    }

    /** The page {@code from/size} under {@code window}: fetched from the top unless it starts past the window. */
    static PageRequest of(int from, int size, int window) {
        return new PageRequest(from, size, window, from < window);
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

    /**
     * True when {@code erank_window} rewrote the search to {@code from=0}, so the response holds the top hits and
     * the page must be cut from them; false when the search went out as the user sent it.
     */
    public boolean fetchedFromTop() {
        return fetchedFromTop;
    }

    /** True when no hit of the page lies inside the top {@code window} hits. */
    boolean pastWindow(int window) {
        return from >= window;
    }

    /** The user's page out of the hits the engine returned (in whatever order they are now). */
    <T> List<T> cut(List<T> hits) {
        return fetchedFromTop ? Reorder.page(hits, from, size) : hits;
    }

    void store(PipelineProcessingContext context) {
        context.setAttribute(ATTR_FROM, from);
        context.setAttribute(ATTR_SIZE, size);
        context.setAttribute(ATTR_WINDOW, window);
        context.setAttribute(ATTR_FETCHED_FROM_TOP, fetchedFromTop);
    }

    /** {@code null} when no {@code erank_window} processor ran for this request. */
    static PageRequest load(PipelineProcessingContext context) {
        if (context == null) {
            return null;
        }
        Object from = context.getAttribute(ATTR_FROM);
        Object size = context.getAttribute(ATTR_SIZE);
        Object window = context.getAttribute(ATTR_WINDOW);
        Object fetchedFromTop = context.getAttribute(ATTR_FETCHED_FROM_TOP);
        if (from instanceof Integer && size instanceof Integer && window instanceof Integer && fetchedFromTop instanceof Boolean) {
            return new PageRequest((Integer) from, (Integer) size, (Integer) window, (Boolean) fetchedFromTop);
        }
        return null;
    }

    /**
     * Why this request is left alone by both processors, or {@code null}: scrolls and {@code search_after} pages
     * are defined by the engine's own order, a field sort has no relevance order to refine, a rescore already
     * reorders the top hits by a second-stage query of the user's own, and {@code size: 0} (aggregations only)
     * asks for no hits.
     */
    static String skipReason(SearchRequest request) {
        if (request.scroll() != null) {
            return SKIP_SCROLL;
        }
        SearchSourceBuilder source = request.source();
        if (source == null) {
            return null;
        }
        if (source.searchAfter() != null && source.searchAfter().length > 0) {
            return SKIP_SEARCH_AFTER;
        }
        if (source.size() == 0) {
            return SKIP_SIZE_ZERO;
        }
        List<SortBuilder<?>> sorts = source.sorts();
        if (sorts != null) {
            for (SortBuilder<?> sort : sorts) {
                if (sort instanceof ScoreSortBuilder == false) {
                    return SKIP_SORT;
                }
            }
        }
        if (source.rescores() != null && source.rescores().isEmpty() == false) {
            return SKIP_RESCORE;
        }
        return null;
    }
}
