package org.erank.opensearch;

import com.sun.net.httpserver.HttpServer;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;
import org.opensearch.core.action.ActionListener;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

/** The real JDK client against a loopback {@link HttpServer}. */
public class HttpRerankTransportTest {

    private HttpServer server;
    private final AtomicReference<String> lastBody = new AtomicReference<>();
    private final AtomicReference<String> lastContentType = new AtomicReference<>();
    private final AtomicReference<String> lastAuthorization = new AtomicReference<>();
    private final CountDownLatch release = new CountDownLatch(1);

    @Before
    public void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/v1/rerank", exchange -> {
            lastBody.set(new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
            lastContentType.set(exchange.getRequestHeaders().getFirst("Content-Type"));
            lastAuthorization.set(exchange.getRequestHeaders().getFirst("Authorization"));
            byte[] body = "{\"results\":[{\"index\":0,\"relevance_score\":0.5}]}".getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream os = exchange.getResponseBody()) {
                os.write(body);
            }
        });
        server.createContext("/broken/v1/rerank", exchange -> {
            byte[] body = "{\"error\":{\"type\":\"boom\",\"reason\":\"down\"},\"status\":503}".getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(503, body.length);
            try (OutputStream os = exchange.getResponseBody()) {
                os.write(body);
            }
        });
        server.createContext("/slow/v1/rerank", exchange -> {
            try {
                release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            exchange.sendResponseHeaders(200, -1);
            exchange.close();
        });
        server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
        server.start();
    }

    @After
    public void stop() {
        release.countDown();
        server.stop(0);
    }

    private URI uri(String prefix) {
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + prefix + "/v1/rerank");
    }

    private static Object call(URI uri, Duration timeout) throws Exception {
        return call(uri, timeout, "");
    }

    private static Object call(URI uri, Duration timeout, String token) throws Exception {
        HttpRerankTransport transport = new HttpRerankTransport(null, () -> token);
        CompletableFuture<Object> result = new CompletableFuture<>();
        transport.post(uri, "{\"query\":\"q\",\"documents\":[\"d\"]}", timeout, ActionListener.wrap(result::complete, result::complete));
        return result.get(20, TimeUnit.SECONDS);
    }

    @Test
    public void postsJsonAndReturnsTheReply() throws Exception {
        Object result = call(uri(""), Duration.ofSeconds(5));
        assertTrue(String.valueOf(result), result instanceof RerankTransport.Reply);
        RerankTransport.Reply reply = (RerankTransport.Reply) result;
        assertEquals(200, reply.status());
        assertEquals(0.5, RerankCodec.decodeResponse(reply.status(), reply.body(), 1).results().get(0).relevanceScore(), 0.0);
        assertEquals("{\"query\":\"q\",\"documents\":[\"d\"]}", lastBody.get());
        assertEquals("application/json", lastContentType.get());
        assertNull("no token, no Authorization header", lastAuthorization.get());
    }

    @Test
    public void sendsTheBearerToken() throws Exception {
        Object result = call(uri(""), Duration.ofSeconds(5), "s3cret");
        assertEquals(200, ((RerankTransport.Reply) result).status());
        assertEquals("Bearer s3cret", lastAuthorization.get());
    }

    @Test
    public void non2xxIsAReplyNotAFailure() throws Exception {
        Object result = call(uri("/broken"), Duration.ofSeconds(5));
        RerankTransport.Reply reply = (RerankTransport.Reply) result;
        assertEquals(503, reply.status());
    }

    @Test
    public void slowServerTimesOut() throws Exception {
        Object result = call(uri("/slow"), Duration.ofMillis(300));
        assertTrue(String.valueOf(result), result instanceof RerankException);
        assertEquals(RerankException.TIMEOUT, ((RerankException) result).type());
    }

    @Test
    public void closedPortIsAConnectionError() throws Exception {
        int port;
        try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = socket.getLocalPort();
        }
        Object result = call(URI.create("http://127.0.0.1:" + port + "/v1/rerank"), Duration.ofSeconds(5));
        assertTrue(String.valueOf(result), result instanceof RerankException);
        assertEquals(RerankException.CONNECTION_ERROR, ((RerankException) result).type());
    }
}
