package org.erank.opensearch;

import org.junit.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

public class ReorderTest {

    static RerankResponse.Result result(int index, double relevance) {
        return new RerankResponse.Result(index, relevance, relevance, null, null, 1, 0.9, "ok", null, null, "full", null);
    }

    @Test
    public void windowIsSortedByRelevanceAndTheRestKeepsItsOrder() {
        List<RerankResponse.Result> results = Arrays.asList(result(2, 0.9), result(0, 0.5), result(1, 0.7));
        assertArrayEquals(new int[] { 2, 1, 0, 3, 4 }, Reorder.order(5, results));
    }

    @Test
    public void sortsEvenIfTheServerOrderIsNotSortedAndTiesKeepServerOrder() {
        List<RerankResponse.Result> results = Arrays.asList(result(0, 0.1), result(3, 0.8), result(1, 0.8), result(2, 0.9));
        assertArrayEquals(new int[] { 2, 3, 1, 0 }, Reorder.order(4, results));
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsRepeatedIndex() {
        Reorder.order(3, Arrays.asList(result(0, 1), result(0, 0.5)));
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsIndexOutsideTheWindow() {
        Reorder.order(3, Arrays.asList(result(2, 1), result(0, 0.5)));
    }

    @Test
    public void pageCut() {
        List<Integer> items = Arrays.asList(0, 1, 2, 3, 4, 5, 6);
        assertEquals(Arrays.asList(0, 1, 2), Reorder.page(items, 0, 3));
        assertEquals(Arrays.asList(5, 6), Reorder.page(items, 5, 3));
        assertEquals(Collections.emptyList(), Reorder.page(items, 7, 3));
        assertEquals(Collections.emptyList(), Reorder.page(items, 2, 0));
        assertEquals(items, Reorder.page(items, 0, Integer.MAX_VALUE));
    }

    @Test
    public void fetchSize() {
        assertEquals(50, Reorder.fetchSize(50, 0, 10));
        assertEquals(50, Reorder.fetchSize(50, 40, 10));
        assertEquals(55, Reorder.fetchSize(50, 45, 10));
        assertEquals(Integer.MAX_VALUE, Reorder.fetchSize(1, Integer.MAX_VALUE, 10));
    }

    /** Consecutive pages of a reranked list, each cut from its own fetch of max(window, from+size), tile the list. */
    @Test
    public void consecutivePagesNeitherOverlapNorSkip() {
        Random random = new Random(42);
        for (int trial = 0; trial < 200; trial++) {
            int total = 1 + random.nextInt(120);
            int window = 1 + random.nextInt(60);
            int size = 1 + random.nextInt(15);
            double[] relevance = new double[total];
            for (int i = 0; i < total; i++) {
                relevance[i] = random.nextDouble();
            }
            List<Integer> seen = new ArrayList<>();
            for (int from = 0; from < total; from += size) {
                int fetched = Math.min(total, Reorder.fetchSize(window, from, size));
                int n = Math.min(window, fetched);
                List<RerankResponse.Result> results = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    results.add(result(i, relevance[i]));
                }
                int[] order = Reorder.order(fetched, results);
                List<Integer> ordered = new ArrayList<>();
                for (int o : order) {
                    ordered.add(o);
                }
                seen.addAll(Reorder.page(ordered, from, size));
            }
            Set<Integer> unique = new HashSet<>(seen);
            assertEquals("no overlap", seen.size(), unique.size());
            assertEquals("no skip", total, unique.size());
            for (int i = Math.min(window, total); i < total; i++) {
                assertEquals("past the window in original order", Integer.valueOf(i), seen.get(i));
            }
            assertTrue(seen.size() == total);
        }
    }
}
