package org.erank.opensearch;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.opensearch.core.action.ActionListener;
import org.opensearch.threadpool.Scheduler;

import java.net.URI;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BiFunction;

/**
 * One {@code POST /v1/rerank}: whichever of reply, transport error or deadline comes first answers the listener,
 * exactly once, and a late reply is dropped. A reply comes with its timing ({@link Answer}), which the processor's
 * {@link Overhead} learns from.
 *
 * <p>The deadline runs on OpenSearch's scheduler besides the HTTP client's own request timeout: the client's timeout
 * covers the exchange it knows about, the deadline covers everything, so no search waits past {@code timeout}
 * whatever the client does. The reply is decoded and checked here (one result per document sent); timeouts,
 * transport errors and bad replies reach the listener as {@link RerankException}s.
 */
final class RerankCall {

    private static final Logger logger = LogManager.getLogger(RerankCall.class);

    private final URI uri;
    private final Duration timeout;
    private final int documents;
    private final ActionListener<Answer> listener;
    private final AtomicBoolean done = new AtomicBoolean();
    private volatile Scheduler.ScheduledCancellable deadline;
    private volatile long postedNanos;

    private RerankCall(URI uri, Duration timeout, int documents, ActionListener<Answer> listener) {
        this.uri = uri;
        this.timeout = timeout;
        this.documents = documents;
        this.listener = listener;
    }

    /**
     * Arms the deadline on {@code scheduler} (when there is one) and posts {@code body}, the request for
     * {@code documents} documents.
     */
    static void start(
        RerankTransport transport,
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler,
        URI uri,
        Duration timeout,
        String body,
        int documents,
        ActionListener<Answer> listener
    ) {
        RerankCall call = new RerankCall(uri, timeout, documents, listener);
        call.armDeadline(scheduler);
        call.postedNanos = System.nanoTime();
        try {
            transport.post(uri, body, timeout, ActionListener.wrap(call::replied, call::failed));
        } catch (Exception e) {
            call.failed(e);
        }
    }

    private void armDeadline(BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler) {
        if (scheduler == null) {
            return;
        }
        try {
            deadline = scheduler.apply(
                timeout.toMillis(),
                () -> failed(new RerankException(RerankException.TIMEOUT, "no reply from " + uri + " within " + timeout.toMillis() + "ms"))
            );
        } catch (RuntimeException e) {
            logger.debug("cannot schedule the erank deadline; relying on the HTTP client's timeout", e);
        }
    }

    private void replied(RerankTransport.Reply reply) {
        long arrivedNanos = System.nanoTime();
        if (finish() == false) {
            return;
        }
        RerankResponse decoded;
        try {
            decoded = RerankCodec.decodeResponse(reply.status(), reply.body(), documents);
        } catch (RerankException e) {
            listener.onFailure(e);
            return;
        }
        listener.onResponse(new Answer(decoded, arrivedNanos - postedNanos, arrivedNanos));
    }

    private void failed(Exception e) {
        if (finish()) {
            listener.onFailure(e);
        }
    }

    /** True for the first caller only; that caller also stops the deadline. */
    private boolean finish() {
        if (done.compareAndSet(false, true) == false) {
            return false;
        }
        Scheduler.ScheduledCancellable d = deadline;
        if (d != null) {
            d.cancel();
        }
        return true;
    }

    /** A decoded reply, with when it arrived ({@link System#nanoTime()}) and how long after the post. */
    static final class Answer {
        private final RerankResponse response;
        private final long roundTripNanos;
        private final long arrivedNanos;

        Answer(RerankResponse response, long roundTripNanos, long arrivedNanos) {
            this.response = response;
            this.roundTripNanos = roundTripNanos;
            this.arrivedNanos = arrivedNanos;
        }

        RerankResponse response() {
            return response;
        }

        long roundTripNanos() {
            return roundTripNanos;
        }

        long arrivedNanos() {
            return arrivedNanos;
        }
    }
}
