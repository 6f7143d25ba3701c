package org.erank.opensearch;

import org.opensearch.core.action.ActionListener;

import java.net.URI;
import java.time.Duration;

/** Sends one JSON POST to the scoring server without blocking the calling thread. */
public interface RerankTransport {

    /**
     * Posts {@code jsonBody} to {@code uri}. Exactly one of the listener's methods is called, at most once, maybe on
     * another thread; failures arrive as {@link RerankException} ({@code timeout} or {@code connection_error}).
     * A non-2xx status is a normal {@link Reply}.
     */
    void post(URI uri, String jsonBody, Duration timeout, ActionListener<Reply> listener);

    /** Status code and body of an HTTP reply. */
    final class Reply {
        private final int status;
        private final String body;

        public Reply(int status, String body) {
            this.status = status;
            this.body = body;
        }

        public int status() {
            return status;
        }

        public String body() {
            return body;
        }
    }
}
