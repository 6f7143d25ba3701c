package org.erank.opensearch;

/**
 * Why a rerank call gave no usable answer. {@link #type()} is what the response's {@code ext.erank.error.type}
 * says: {@code timeout}, {@code connection_error}, {@code http_error}, {@code malformed_response} or
 * {@code internal_error}. (A search with nothing to score — no query text, no hit text — is skipped, not failed:
 * see {@link ErankMarker}.)
 */
public final class RerankException extends Exception {

    public static final String TIMEOUT = "timeout";
    public static final String CONNECTION_ERROR = "connection_error";
    public static final String HTTP_ERROR = "http_error";
    public static final String MALFORMED_RESPONSE = "malformed_response";
    public static final String INTERNAL_ERROR = "internal_error";

    private static final long serialVersionUID = 1L;

    private final String type;

    public RerankException(String type, String message) {
        super(message);
        this.type = type;
    }

    public RerankException(String type, String message, Throwable cause) {
        super(message, cause);
        this.type = type;
    }

    public String type() {
        return type;
    }
}
