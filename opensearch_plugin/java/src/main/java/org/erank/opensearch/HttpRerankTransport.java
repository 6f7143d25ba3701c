package org.erank.opensearch;

import org.opensearch.core.action.ActionListener;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.AccessController;
import java.security.PrivilegedAction;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.function.Supplier;

/**
 * {@link RerankTransport} on the JDK's {@link HttpClient} (no extra dependency): {@code sendAsync} never blocks a
 * search thread. HTTP/1.1 only, no redirects. The client and every send run inside {@code doPrivileged}, so only
 * this plugin's {@code plugin-security.policy} grants count (2.x security manager, 3.x agent). A non-empty token
 * goes out as {@code Authorization: Bearer <token>}, read per call so a keystore reload takes effect at once.
 */
@SuppressWarnings("removal")
final class HttpRerankTransport implements RerankTransport {

    private final HttpClient client;
    private final Supplier<String> token;

    /**
     * @param executor runs the client's asynchronous work and completions (OpenSearch's generic pool)
     * @param token the REST front's bearer token now ("" or null: none)
     */
    HttpRerankTransport(Executor executor, Supplier<String> token) {
        this.token = token;
        this.client = AccessController.doPrivileged((PrivilegedAction<HttpClient>) () -> {
            HttpClient.Builder builder = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER);
            if (executor != null) {
                builder.executor(executor);
            }
            return builder.build();
        });
    }

    @Override
    public void post(URI uri, String jsonBody, Duration timeout, ActionListener<Reply> listener) {
        final CompletableFuture<HttpResponse<String>> future;
        try {
            HttpRequest.Builder builder = HttpRequest.newBuilder(uri)
                .timeout(timeout)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(jsonBody, StandardCharsets.UTF_8));
            String bearer = token.get();
            if (bearer != null && !bearer.isEmpty()) {
                builder.header("Authorization", "Bearer " + bearer);
            }
            HttpRequest request = builder.build();
            future = AccessController.doPrivileged(
                (PrivilegedAction<CompletableFuture<HttpResponse<String>>>) () -> client.sendAsync(
                    request,
                    HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8)
                )
            );
        } catch (RuntimeException e) {
            listener.onFailure(new RerankException(RerankException.CONNECTION_ERROR, "cannot send to " + uri + ": " + e, e));
            return;
        }
        future.whenComplete((response, error) -> {
            if (error != null) {
                listener.onFailure(classify(uri, error));
            } else {
                listener.onResponse(new Reply(response.statusCode(), response.body()));
            }
        });
    }

    static RerankException classify(URI uri, Throwable error) {
        Throwable cause = error;
        while ((cause instanceof CompletionException || cause instanceof ExecutionException) && cause.getCause() != null) {
            cause = cause.getCause();
        }
        if (cause instanceof HttpTimeoutException) {
            return new RerankException(RerankException.TIMEOUT, "no reply from " + uri + " in time: " + cause.getMessage(), cause);
        }
        if (cause instanceof IOException) {
            return new RerankException(RerankException.CONNECTION_ERROR, "cannot reach " + uri + ": " + cause, cause);
        }
        return new RerankException(RerankException.CONNECTION_ERROR, "call to " + uri + " failed: " + cause, cause);
    }
}
