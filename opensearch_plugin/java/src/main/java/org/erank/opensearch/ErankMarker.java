package org.erank.opensearch;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The response's {@code ext.erank}: what the {@code erank} processor did with this search. Keys and values are
 * named as the query proxy names them ({@code connector/proxy/}), so a client reads both the same way:
 *
 * <pre>
 * {"status": "reranked", "model", "fused", "fusion"?, "reranked",
 *  "completions": {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"},
 *  "window", "text_missing"?, "first_stage_ms", "rerank_ms"}
 * {"status": "failed", "error": {"type", "reason"}, "fail_open": true, "window", "first_stage_ms", "rerank_ms"}
 * {"status": "skipped", "reason", "document_fields"? (no_text), "window", "first_stage_ms", "rerank_ms"}
 * </pre>
 *
 * {@code fusion} is the method the server says it fused with (not the one asked for: the server's word is what
 * the scores mean). {@code completions} counts the reranked hits whose answer came after the model's full reasoning,
 * was cut at the call's budget, or did not fit at all, and those the server's score cache answered, with the
 * deadline the server worked to ({@link RerankResponse.Completions}).
 *
 * {@code first_stage_ms} is the engine's own {@code took}; {@code rerank_ms} is the time the processor added
 * (the scoring call, text extraction, rewriting), which is also added to the response's {@code took}.
 */
final class ErankMarker {

    static final String STATUS_RERANKED = "reranked";
    static final String STATUS_FAILED = "failed";
    static final String STATUS_SKIPPED = "skipped";

    /** Skip reasons of the response side; the request-shape ones are in {@link PageRequest}. */
    static final String SKIP_NO_HITS = "no_hits";
    static final String SKIP_PAST_WINDOW = "past_window";
    static final String SKIP_NO_QUERY_TEXT = "no_query_text";
    static final String SKIP_NO_TEXT = "no_text";

    private final Map<String, Object> values = new LinkedHashMap<>();

    private ErankMarker(String status) {
        values.put("status", status);
    }

    static ErankMarker reranked(RerankResponse reply, int reranked, int textMissing) {
        ErankMarker marker = new ErankMarker(STATUS_RERANKED);
        marker.putIfNotNull("model", reply.model());
        marker.putIfNotNull("fused", reply.fused());
        marker.putIfNotNull("fusion", reply.fusion());
        marker.values.put("reranked", reranked);
        marker.values.put(RerankCodec.COMPLETIONS, reply.completions().toMap());
        if (textMissing > 0) {
            marker.values.put("text_missing", textMissing);
        }
        return marker;
    }

    static ErankMarker failed(RerankException error) {
        ErankMarker marker = new ErankMarker(STATUS_FAILED);
        Map<String, Object> detail = new LinkedHashMap<>();
        detail.put("type", error.type());
        detail.put("reason", error.getMessage());
        marker.values.put("error", detail);
        marker.values.put("fail_open", true);
        return marker;
    }

    static ErankMarker skipped(String reason) {
        ErankMarker marker = new ErankMarker(STATUS_SKIPPED);
        marker.values.put("reason", reason);
        return marker;
    }

    /** {@code no_text}: none of the top hits had any of these fields, so there was nothing to score. */
    static ErankMarker noText(List<String> documentFields) {
        ErankMarker marker = skipped(SKIP_NO_TEXT);
        marker.values.put("document_fields", documentFields);
        return marker;
    }

    /** The closing keys every marker carries. */
    Map<String, Object> finish(int window, long firstStageMillis, long rerankNanos) {
        values.put("window", window);
        values.put("first_stage_ms", (double) firstStageMillis);
        values.put("rerank_ms", Math.round(rerankNanos / 1_000.0) / 1_000.0);
        return values;
    }

    private void putIfNotNull(String key, Object value) {
        if (value != null) {
            values.put(key, value);
        }
    }
}
