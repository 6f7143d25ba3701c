package org.erank.opensearch;

import org.junit.Test;

import java.time.Duration;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

public class OverheadTest {

    private static final long MS = 1_000_000L;

    @Test
    public void beforeAnySampleTheBudgetIsTheTimeoutLessTheSeeds() {
        Overhead overhead = new Overhead(Duration.ofSeconds(10));
        assertEquals((20 + 30) * MS, overhead.nanos());
        assertEquals(10_000 - 50, overhead.budgetMillis());
        // a short timeout: each seed is at most a tenth of it
        assertEquals(200 - 20 - 20, new Overhead(Duration.ofMillis(200)).budgetMillis());
    }

    @Test
    public void movingEstimateIsMeanPlusFourDeviations() {
        Overhead.Moving m = new Overhead.Moving(7);
        assertEquals("the seed before the first sample", 7.0, m.value(), 0.0);
        m.add(10); // RFC 6298 first sample: mean = 10, deviation = 5
        assertEquals(10 + 4 * 5, m.value(), 1e-9);
        m.add(18); // deviation = 5 + (|18 - 10| - 5) / 4 = 5.75; mean = 10 + (18 - 10) / 8 = 11
        assertEquals(11 + 4 * 5.75, m.value(), 1e-9);
        for (int i = 0; i < 200; i++) {
            m.add(4);
        }
        assertEquals("a steady sample: the estimate settles on it", 4.0, m.value(), 1e-6);
        Overhead.Moving early = new Overhead.Moving(0);
        for (int i = 0; i < 200; i++) {
            early.add(-50);
        }
        assertEquals("never below 0", 0.0, early.value(), 0.0);
    }

    @Test
    public void theRewriteIsMeasuredOnEveryReply() {
        Overhead overhead = new Overhead(Duration.ofSeconds(10));
        overhead.rewrote(4 * MS); // after the reply: 4 + 4 * 2 = 12 ms; exchange still its 30 ms seed
        assertEquals(10_000 - 12 - 30, overhead.budgetMillis());
        overhead.replied(9_000 * MS, 9_950, false);
        assertEquals("a slow reply that finished early says nothing about the exchange", 10_000 - 12 - 30, overhead.budgetMillis());
        overhead.replied(2 * MS, 9_950, false);
        assertEquals("a fast one bounds it: the trip took at most 2 ms (2 + 4 x 1)", 10_000 - 12 - 6, overhead.budgetMillis());
    }

    @Test
    public void theExchangeIsHowLateADeadlineBoundReplyArrives() {
        Overhead overhead = new Overhead(Duration.ofSeconds(10));
        overhead.rewrote(4 * MS);
        long budget = overhead.budgetMillis();
        overhead.replied((budget + 6) * MS, budget, true); // 6 ms past its budget: 6 + 4 * 3 = 18 ms
        assertEquals(10_000 - 12 - 18, overhead.budgetMillis());
        for (int i = 0; i < 200; i++) {
            overhead.replied((budget - 20) * MS, budget, true); // the REST front keeps answering 20 ms early
        }
        assertEquals("only the rewrite is left", 10_000 - 12, overhead.budgetMillis());
    }

    @Test
    public void aTimeoutWithABudgetWidensTheMargin() {
        Overhead overhead = new Overhead(Duration.ofSeconds(10));
        long budget = overhead.budgetMillis(); // 9950: a margin of 50 ms was too little
        overhead.timedOut(budget);
        // exchange's first sample 2 x 50 = 100 ms: 100 + 4 * 50 = 300 ms, beside the 20 ms seed
        assertEquals(10_000 - 20 - 300, overhead.budgetMillis());
        overhead.timedOut(0);
        assertEquals("no budget sent, nothing learnt", 10_000 - 20 - 300, overhead.budgetMillis());
    }

    @Test
    public void theServerKeepsAtLeastHalfTheTimeoutAndAtLeastOneMillisecond() {
        Overhead overhead = new Overhead(Duration.ofSeconds(1));
        for (int i = 0; i < 20; i++) {
            overhead.timedOut(overhead.budgetMillis());
            overhead.rewrote(800 * MS);
        }
        assertEquals(500 * MS, overhead.nanos());
        assertEquals(500, overhead.budgetMillis());
        Overhead tiny = new Overhead(Duration.ofMillis(1));
        tiny.rewrote(5 * MS);
        assertEquals(1, tiny.budgetMillis());
        assertTrue(tiny.nanos() <= MS / 2);
    }
}
