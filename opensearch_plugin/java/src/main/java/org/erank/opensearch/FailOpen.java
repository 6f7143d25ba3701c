package org.erank.opensearch;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.opensearch.OpenSearchStatusException;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.core.action.ActionListener;
import org.opensearch.core.rest.RestStatus;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What a failed rerank does to the search. Fail-open (the default): the engine's own answer, cut to the page and
 * marked {@code failed} — a slow or absent scoring server costs relevance, never the search. Otherwise a
 * {@code 502} ({@code 504} on timeout) goes to the pipeline, where OpenSearch's {@code ignore_failure} decides.
 *
 * <p>One instance per processor: it logs at most one WARN per 10 s (DEBUG for the rest), so an outage does not
 * write a line per search.
 */
final class FailOpen {

    private static final Logger logger = LogManager.getLogger(FailOpen.class);
    private static final long WARN_INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(10);

    private final boolean enabled;
    private final AtomicLong lastWarnNanos = new AtomicLong();

    FailOpen(boolean enabled) {
        this.enabled = enabled;
    }

    /** Answers {@code listener} for {@code failure}, which may be anything: non-{@link RerankException}s are internal errors. */
    void answer(Exception failure, ResponseRewriter rewriter, ActionListener<SearchResponse> listener) {
        RerankException error = failure instanceof RerankException
            ? (RerankException) failure
            : new RerankException(RerankException.INTERNAL_ERROR, String.valueOf(failure), failure);
        if (enabled == false) {
            RestStatus status = RerankException.TIMEOUT.equals(error.type()) ? RestStatus.GATEWAY_TIMEOUT : RestStatus.BAD_GATEWAY;
            listener.onFailure(new OpenSearchStatusException("erank rerank failed [" + error.type() + "]: " + error.getMessage(), status, error));
            return;
        }
        log(error);
        SearchResponse response;
        try {
            response = rewriter.failed(error);
        } catch (RuntimeException e) {
            listener.onFailure(e);
            return;
        }
        listener.onResponse(response);
    }

    private void log(RerankException error) {
        long now = System.nanoTime();
        long last = lastWarnNanos.get();
        if ((last == 0 || now - last >= WARN_INTERVAL_NANOS) && lastWarnNanos.compareAndSet(last, now == 0 ? 1 : now)) {
            logger.warn("erank: serving the first-stage order ({}): {}", error.type(), error.getMessage());
        } else {
            logger.debug("erank: serving the first-stage order ({}): {}", error.type(), error.getMessage());
        }
    }
}
