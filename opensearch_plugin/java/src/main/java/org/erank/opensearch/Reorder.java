package org.erank.opensearch;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/** The pure ordering and paging rules, free of OpenSearch types. */
public final class Reorder {

    private Reorder() {}

    /**
     * The new order of {@code total} hits of which the first {@code results.size()} were reranked: the reranked
     * ones by descending relevance score (ties keep the server's order), then every hit past the window in its
     * original order.
     *
     * @return original positions, in their new order
     */
    public static int[] order(int total, List<RerankResponse.Result> results) {
        int reranked = results.size();
        if (reranked > total) {
            throw new IllegalArgumentException(reranked + " results for " + total + " hits");
        }
        List<RerankResponse.Result> sorted = new ArrayList<>(results);
        // List.sort is stable: equal scores keep the server's order.
        sorted.sort(Comparator.comparingDouble(RerankResponse.Result::relevanceScore).reversed());
        int[] order = new int[total];
        boolean[] used = new boolean[total];
        for (int i = 0; i < reranked; i++) {
            int index = sorted.get(i).index();
            if (index < 0 || index >= reranked || used[index]) {
                throw new IllegalArgumentException("bad or repeated index " + index);
            }
            used[index] = true;
            order[i] = index;
        }
        for (int i = reranked; i < total; i++) {
            order[i] = i;
        }
        return order;
    }

    /**
     * The {@code _score} of a hit below the reranked window: {@code lowestReranked - 1 - distance}, where
     * {@code distance} is 0 for the first hit past the window, 1 for the next, and so on. Every such hit scores
     * below every reranked hit and below the hits before it, so {@code _score} never rises down a page, and the
     * same hit gets the same score on every page of a query. Its first-stage score stays in {@code fields._erank}.
     * Where float precision would swallow the step (scores around 10^7 and more) the score is the next float
     * below {@code lowestReranked}: still below every reranked hit.
     */
    public static float belowWindowScore(float lowestReranked, int distance) {
        float score = (float) ((double) lowestReranked - 1.0 - distance);
        return score < lowestReranked ? score : Math.nextDown(lowestReranked);
    }

    /** {@code items[from, from + size)}, clipped to the list; empty past its end. */
    public static <T> List<T> page(List<T> items, int from, int size) {
        if (from < 0 || size < 0) {
            throw new IllegalArgumentException("from and size must be >= 0");
        }
        if (from >= items.size() || size == 0) {
            return Collections.emptyList();
        }
        int to = (int) Math.min((long) from + size, items.size());
        return items.subList(from, to);
    }

    /** How many hits the engine must return so that page {@code from/size} can be cut after reranking {@code window}. */
    public static int fetchSize(int window, int from, int size) {
        long needed = Math.max((long) window, (long) from + size);
        return (int) Math.min(needed, Integer.MAX_VALUE);
    }
}
