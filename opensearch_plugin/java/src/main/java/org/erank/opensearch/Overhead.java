package org.erank.opensearch;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * What an {@code erank} processor spends of its {@code timeout} besides the REST front's own work, measured on its
 * own calls, so that a call with {@code on_budget: cut} can send {@code budget_ms = timeout - overhead}: the REST
 * front (and the scoring server behind it) then answer by a deadline that leaves the processor time to take the
 * reply in and rewrite the search before its own {@code timeout}, which stays the HTTP call's timeout.
 *
 * <p>Two parts, each a moving estimate (mean plus four mean deviations, updated as TCP updates its retransmission
 * timeout, RFC 6298: gains 1/8 and 1/4):
 * <ul>
 *   <li>after the reply: decoding it and rewriting the response, measured on every reply;</li>
 *   <li>the exchange: how long after its budget a reply arrives (the trip to the REST front and back, what the REST
 *       front does after its deadline), measured on the replies that reached their deadline (some document cut or
 *       unscored). A reply that finished early took at least the trip: when it came back sooner than the estimate,
 *       its round trip is taken as a sample. A call that times out with a budget was late by more than the margin
 *       it had: twice that margin is taken as a sample.</li>
 * </ul>
 * Before its first sample, each part starts from a seed ({@link #SEED_AFTER_REPLY}, {@link #SEED_EXCHANGE}, at most a
 * tenth of the timeout each). The sum is held to half the timeout, so the server keeps at least half of it whatever was
 * measured, and the budget is at least 1 ms. Thread-safe: one instance per processor serves concurrent searches.
 */
final class Overhead {

    static final Duration SEED_AFTER_REPLY = Duration.ofMillis(20);
    static final Duration SEED_EXCHANGE = Duration.ofMillis(30);
    private static final long NANOS_PER_MILLI = TimeUnit.MILLISECONDS.toNanos(1);

    private final long timeoutNanos;
    private final Moving afterReply;
    private final Moving exchange;

    Overhead(Duration timeout) {
        this.timeoutNanos = timeout.toNanos();
        this.afterReply = new Moving(Math.min(SEED_AFTER_REPLY.toNanos(), timeoutNanos / 10));
        this.exchange = new Moving(Math.min(SEED_EXCHANGE.toNanos(), timeoutNanos / 10));
    }

    /** The {@code budget_ms} of the next call: the timeout less the estimate, at least 1. */
    synchronized long budgetMillis() {
        long millis = (timeoutNanos - nanos()) / NANOS_PER_MILLI;
        return Math.max(1, millis);
    }

    /** The estimate now, in nanoseconds: both parts, held to half the timeout. */
    synchronized long nanos() {
        double sum = afterReply.value() + exchange.value();
        return (long) Math.min(Math.ceil(sum), timeoutNanos / 2.0);
    }

    /**
     * A reply to a call that was given {@code budgetMillis} (0: none) arrived {@code roundTripNanos} after it was
     * posted; {@code reachedDeadline}: the server cut or left unscored some document, so it worked up to its deadline.
     */
    synchronized void replied(long roundTripNanos, long budgetMillis, boolean reachedDeadline) {
        if (reachedDeadline && budgetMillis > 0) {
            exchange.add(roundTripNanos - budgetMillis * NANOS_PER_MILLI);
        } else if (roundTripNanos < exchange.value()) {
            exchange.add(roundTripNanos);
        }
    }

    /** The processor took {@code nanos} from the reply's arrival to the rewritten response. */
    synchronized void rewrote(long nanos) {
        afterReply.add(Math.max(0, nanos));
    }

    /** A call given {@code budgetMillis} got no reply within the timeout. */
    synchronized void timedOut(long budgetMillis) {
        if (budgetMillis > 0) {
            long margin = timeoutNanos - budgetMillis * NANOS_PER_MILLI;
            exchange.add(2.0 * Math.max(margin, NANOS_PER_MILLI));
        }
    }

    /** A mean and mean deviation, moved by each sample (RFC 6298's smoothed round trip and its variation). */
    static final class Moving {
        private static final double MEAN_GAIN = 1.0 / 8;
        private static final double DEVIATION_GAIN = 1.0 / 4;
        private static final double DEVIATIONS = 4;

        private final double seed;
        private boolean sampled;
        private double mean;
        private double deviation;

        Moving(double seed) {
            this.seed = seed;
        }

        void add(double sample) {
            if (sampled == false) {
                mean = sample;
                deviation = Math.abs(sample) / 2;
                sampled = true;
                return;
            }
            deviation += DEVIATION_GAIN * (Math.abs(sample - mean) - deviation);
            mean += MEAN_GAIN * (sample - mean);
        }

        /** The seed before the first sample; then mean + 4 deviations, never below 0. */
        double value() {
            return sampled ? Math.max(0, mean + DEVIATIONS * deviation) : seed;
        }
    }
}
