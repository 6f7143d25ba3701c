package org.erank.opensearch;

import org.opensearch.common.xcontent.XContentFactory;
import org.opensearch.common.xcontent.json.JsonXContent;
import org.opensearch.core.xcontent.DeprecationHandler;
import org.opensearch.core.xcontent.NamedXContentRegistry;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * JSON mapping of the scoring server's REST contract.
 *
 * <pre>
 * POST {endpoint}/v1/rerank
 * request:  {"query": str, "documents": [str], "instruction": str? | "instruction_preset": str?,
 *            "first_stage_scores": [float]?, "alpha": float?, "fusion": "zscore"|"minmax"|"rrf"?,
 *            "rank_constant": int?, "long_documents": "truncate"|"best_passage"?, "passage_overlap": int?,
 *            "return_reasoning": true?, "budget_ms": int?, "on_budget": "cut"|"fail_open"?,
 *            "finish_in_background": true?}
 * response: {"model": str, "fused": bool, "fusion": str?, "results": [{"index", "relevance_score", "rank_score",
 *            "answer", "answer_probability", "status", "hybrid_score"?, "first_stage_score"?, "reasoning": str?,
 *            "passage": {"index", "start_char", "end_char", "count"}?, "completion": "full"|"cut"|"unscored"?,
 *            "thinking_tokens": int?}],                                   one per document, best first
 *            "completions": {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}?}
 * error:    non-2xx, {"error": {"type": str, "reason": str}, "status": int}
 * </pre>
 *
 * A REST front from before budgets sends no {@code completion}s and no {@code completions}: every result is then
 * {@code full}, and the counts are the results' ({@link RerankResponse.Completions#count}), {@code cached} its
 * {@code usage.cache_hits}.
 */
public final class RerankCodec {

    private static final List<String> PASSAGE_KEYS = List.of("index", "start_char", "end_char", "count");
    static final String BUDGET_MS = "budget_ms";
    static final String COMPLETION = "completion";
    static final String THINKING_TOKENS = "thinking_tokens";
    static final String COMPLETIONS = "completions";

    private RerankCodec() {}

    public static String encodeRequest(
        String query,
        List<String> documents,
        String instruction,
        String instructionPreset,
        float[] firstStageScores,
        Double alpha,
        RerankOptions options
    ) {
        try (XContentBuilder builder = XContentFactory.jsonBuilder()) {
            builder.startObject();
            builder.field("query", query);
            builder.startArray("documents");
            for (String document : documents) {
                builder.value(document);
            }
            builder.endArray();
            if (instruction != null) {
                builder.field("instruction", instruction);
            }
            if (instructionPreset != null) {
                builder.field("instruction_preset", instructionPreset);
            }
            if (firstStageScores != null) {
                if (firstStageScores.length != documents.size()) {
                    throw new IllegalArgumentException("first_stage_scores must have one score per document");
                }
                builder.startArray("first_stage_scores");
                for (float score : firstStageScores) {
                    builder.value(score);
                }
                builder.endArray();
            }
            if (alpha != null) {
                builder.field("alpha", alpha.doubleValue());
            }
            fieldIfNotNull(builder, RerankOptions.FUSION, options.fusion());
            fieldIfNotNull(builder, RerankOptions.RANK_CONSTANT, options.rankConstant());
            fieldIfNotNull(builder, RerankOptions.LONG_DOCUMENTS, options.longDocuments());
            fieldIfNotNull(builder, RerankOptions.PASSAGE_OVERLAP, options.passageOverlap());
            if (options.reasoning()) {
                builder.field("return_reasoning", true);
            }
            budget(builder, options);
            builder.endObject();
            return builder.toString();
        } catch (IOException e) {
            throw new IllegalStateException("cannot encode the rerank request", e);
        }
    }

    /**
     * {@code on_budget: cut} with the call's {@code budget_ms} (and {@code finish_in_background} when asked), or
     * {@code on_budget: fail_open} without a budget; nothing for {@code cut} options that no call has set a budget on.
     */
    private static void budget(XContentBuilder builder, RerankOptions options) throws IOException {
        if (options.cuts() == false) {
            builder.field(RerankOptions.ON_BUDGET, options.onBudget());
            return;
        }
        if (options.budgetMillis() > 0) {
            builder.field(BUDGET_MS, options.budgetMillis());
            builder.field(RerankOptions.ON_BUDGET, options.onBudget());
            if (options.finishInBackground()) {
                builder.field(RerankOptions.FINISH_IN_BACKGROUND, true);
            }
        }
    }

    private static void fieldIfNotNull(XContentBuilder builder, String name, Object value) throws IOException {
        if (value != null) {
            builder.field(name, value);
        }
    }

    /**
     * Maps one HTTP reply for {@code documentCount} documents.
     *
     * @throws RerankException {@code http_error} for a non-2xx status, {@code malformed_response} for a body that
     *                         breaks the contract (not JSON, wrong count, duplicate or out-of-range index, ...)
     */
    public static RerankResponse decodeResponse(int status, String body, int documentCount) throws RerankException {
        if (status < 200 || status >= 300) {
            throw new RerankException(RerankException.HTTP_ERROR, "scoring server answered HTTP " + status + describeError(body));
        }
        Map<String, Object> map;
        try {
            map = parseObject(body);
        } catch (Exception e) {
            throw new RerankException(RerankException.MALFORMED_RESPONSE, "reply is not a JSON object: " + e.getMessage());
        }
        Object resultsObject = map.get("results");
        if (resultsObject instanceof List == false) {
            throw new RerankException(RerankException.MALFORMED_RESPONSE, "reply has no [results] list");
        }
        List<?> rawResults = (List<?>) resultsObject;
        if (rawResults.size() != documentCount) {
            throw new RerankException(
                RerankException.MALFORMED_RESPONSE,
                "reply has " + rawResults.size() + " results for " + documentCount + " documents"
            );
        }
        boolean[] seen = new boolean[documentCount];
        List<RerankResponse.Result> results = new ArrayList<>(documentCount);
        for (int position = 0; position < rawResults.size(); position++) {
            Object raw = rawResults.get(position);
            if (raw instanceof Map == false) {
                throw malformed(position, "is not an object");
            }
            Map<?, ?> result = (Map<?, ?>) raw;
            Object indexObject = result.get("index");
            if (isIntegral(indexObject) == false) {
                throw malformed(position, "has no integer [index]");
            }
            long index = ((Number) indexObject).longValue();
            if (index < 0 || index >= documentCount) {
                throw malformed(position, "has [index] " + index + " outside [0, " + documentCount + ")");
            }
            if (seen[(int) index]) {
                throw malformed(position, "repeats [index] " + index);
            }
            seen[(int) index] = true;
            Double relevance = number(result, "relevance_score", position, true);
            Double rank = number(result, "rank_score", position, false);
            Double hybrid = number(result, "hybrid_score", position, false);
            Double firstStage = number(result, "first_stage_score", position, false);
            Double answerProbability = number(result, "answer_probability", position, false);
            Object answerObject = result.get("answer");
            Integer answer = null;
            if (answerObject != null) {
                if (isIntegral(answerObject) == false) {
                    throw malformed(position, "has a non-integer [answer]");
                }
                answer = ((Number) answerObject).intValue();
            }
            Object statusObject = result.get("status");
            String resultStatus = statusObject == null ? null : String.valueOf(statusObject);
            Object reasoning = result.get("reasoning");
            if (reasoning != null && reasoning instanceof String == false) {
                throw malformed(position, "has a non-string [reasoning]");
            }
            Object completion = result.get(COMPLETION);
            if (completion != null && completion instanceof String == false) {
                throw malformed(position, "has a non-string [" + COMPLETION + "]");
            }
            Integer thinkingTokens = count(result.get(THINKING_TOKENS), "result #" + position + " [" + THINKING_TOKENS + "]");
            results.add(
                new RerankResponse.Result(
                    (int) index,
                    relevance,
                    rank,
                    hybrid,
                    firstStage,
                    answer,
                    answerProbability,
                    resultStatus,
                    (String) reasoning,
                    passage(result.get("passage"), position),
                    completion == null ? RerankResponse.COMPLETION_FULL : (String) completion,
                    thinkingTokens
                )
            );
        }
        Object model = map.get("model");
        Object fused = map.get("fused");
        Object fusion = map.get("fusion");
        return new RerankResponse(
            model == null ? null : String.valueOf(model),
            fused instanceof Boolean ? (Boolean) fused : null,
            fusion instanceof String ? (String) fusion : null,
            Collections.unmodifiableList(results),
            completions(map, results)
        );
    }

    /**
     * The reply's {@code completions}, or, from an older REST front without them, the results' own completions
     * counted with its {@code usage.cache_hits} as {@code cached}.
     */
    private static RerankResponse.Completions completions(Map<String, Object> reply, List<RerankResponse.Result> results)
        throws RerankException {
        Object value = reply.get(COMPLETIONS);
        if (value == null) {
            Object usage = reply.get("usage");
            Integer cached = usage instanceof Map ? count(((Map<?, ?>) usage).get("cache_hits"), "reply [usage.cache_hits]") : null;
            return RerankResponse.Completions.count(results, cached == null ? 0 : cached);
        }
        if (value instanceof Map == false) {
            throw new RerankException(RerankException.MALFORMED_RESPONSE, "reply has a [" + COMPLETIONS + "] that is not an object");
        }
        Map<?, ?> map = (Map<?, ?>) value;
        String[] keys = { RerankResponse.COMPLETION_FULL, RerankResponse.COMPLETION_CUT, RerankResponse.COMPLETION_UNSCORED, "cached", "deadline_ms" };
        int[] counts = new int[keys.length];
        for (int i = 0; i < keys.length; i++) {
            Integer n = count(map.get(keys[i]), "reply [" + COMPLETIONS + "." + keys[i] + "]");
            counts[i] = n == null ? 0 : n;
        }
        Object margin = map.get("closing_margin_ms");
        double closingMargin = 0.0;
        if (margin != null) {
            closingMargin = margin instanceof Number ? ((Number) margin).doubleValue() : Double.NaN;
            if (Double.isFinite(closingMargin) == false || closingMargin < 0) {
                throw new RerankException(RerankException.MALFORMED_RESPONSE, "reply [" + COMPLETIONS + ".closing_margin_ms] is not a duration: " + margin);
            }
        }
        return new RerankResponse.Completions(counts[0], counts[1], counts[2], counts[3], counts[4], closingMargin);
    }

    /** A non-negative integer, or {@code null} when absent. */
    private static Integer count(Object value, String what) throws RerankException {
        if (value == null) {
            return null;
        }
        if (isIntegral(value) == false || ((Number) value).longValue() < 0 || ((Number) value).longValue() > Integer.MAX_VALUE) {
            throw new RerankException(RerankException.MALFORMED_RESPONSE, what + " is not a count: " + value);
        }
        return ((Number) value).intValue();
    }

    /** The best passage's position ({@code index}, {@code start_char}, {@code end_char}, {@code count}), or null. */
    private static Map<String, Object> passage(Object value, int position) throws RerankException {
        if (value == null) {
            return null;
        }
        if (value instanceof Map == false) {
            throw malformed(position, "has a [passage] that is not an object");
        }
        Map<String, Object> passage = new LinkedHashMap<>();
        for (String key : PASSAGE_KEYS) {
            Object member = ((Map<?, ?>) value).get(key);
            if (isIntegral(member) == false) {
                throw malformed(position, "has no integer [passage." + key + "]");
            }
            passage.put(key, ((Number) member).intValue());
        }
        return Collections.unmodifiableMap(passage);
    }

    private static Double number(Map<?, ?> result, String key, int position, boolean required) throws RerankException {
        Object value = result.get(key);
        if (value == null) {
            if (required) {
                throw malformed(position, "has no [" + key + "]");
            }
            return null;
        }
        if (value instanceof Number == false) {
            throw malformed(position, "has a non-numeric [" + key + "]");
        }
        double d = ((Number) value).doubleValue();
        if (Double.isFinite(d) == false) {
            throw malformed(position, "has a non-finite [" + key + "]");
        }
        return d;
    }

    private static boolean isIntegral(Object value) {
        if (value instanceof Integer || value instanceof Long || value instanceof Short || value instanceof Byte) {
            return true;
        }
        if (value instanceof Number) {
            double d = ((Number) value).doubleValue();
            return Double.isFinite(d) && d == Math.rint(d);
        }
        return false;
    }

    private static RerankException malformed(int position, String what) {
        return new RerankException(RerankException.MALFORMED_RESPONSE, "result #" + position + " " + what);
    }

    /** {@code ": <type>: <reason>"} from the server's error JSON, or a short excerpt of the body. */
    static String describeError(String body) {
        if (body == null || body.isEmpty()) {
            return "";
        }
        try {
            Map<String, Object> map = parseObject(body);
            Object error = map.get("error");
            if (error instanceof Map) {
                Map<?, ?> e = (Map<?, ?>) error;
                Object type = e.get("type");
                Object reason = e.get("reason");
                return String.format(Locale.ROOT, ": %s: %s", type, reason);
            }
            if (error != null) {
                return ": " + error;
            }
        } catch (Exception ignored) {
            // not JSON: quote the start of it
        }
        String excerpt = body.length() > 200 ? body.substring(0, 200) + "..." : body;
        return ": " + excerpt.replace('\n', ' ');
    }

    static Map<String, Object> parseObject(String body) throws IOException {
        if (body == null) {
            throw new IOException("empty body");
        }
        try (
            XContentParser parser = JsonXContent.jsonXContent.createParser(
                NamedXContentRegistry.EMPTY,
                DeprecationHandler.THROW_UNSUPPORTED_OPERATION,
                body
            )
        ) {
            XContentParser.Token token = parser.nextToken();
            if (token != XContentParser.Token.START_OBJECT) {
                throw new IOException("expected a JSON object, got " + token);
            }
            return parser.map();
        }
    }
}
