package org.erank.opensearch;

import org.opensearch.OpenSearchException;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.ingest.ConfigurationUtils;

import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The validated configuration of one {@code erank} response processor.
 *
 * <pre>
 * {"erank": {
 *     "endpoint": "http://127.0.0.1:8080",              required, http(s) base URL of the scoring server
 *     "context": {"document_fields": ["title", "body"]}, required, text = the fields joined with "\n"
 *     "window": 50,                                      hits to rerank, 1..10000 (default 50)
 *     "instruction": "...",                              optional, passed through to the server
 *     "instruction_preset": "web_search",                optional, instead of instruction: a preset the server names
 *     "alpha": 0.2,                                      optional, fusion weight in [0, 1]
 *     "timeout": "5s",                                   optional, whole call to the server (default 10s)
 *     "fail_open": true,                                 optional (default true), see README
 *     "fusion": "zscore",                                optional: zscore | minmax | rrf (server default otherwise)
 *     "rank_constant": 60,                               optional, RRF's k, integer >= 1 (only with fusion rrf)
 *     "long_documents": "best_passage",                  optional: truncate | best_passage
 *     "passage_overlap": 64,                             optional, tokens, integer >= 0 (not with truncate)
 *     "explain_reasoning": false,                        optional: ask for the server's reasoning on every search
 *     "on_budget": "cut",                                optional: cut (default) | fail_open, see RerankOptions
 *     "finish_in_background": false                      optional: cut documents finish in the server's background
 * }}
 * </pre>
 *
 * Errors name the offending field, in OpenSearch's {@link ConfigurationUtils} style
 * ({@code [window] must be between 1 and 10000}).
 */
public final class ErankConfig {

    public static final String ENDPOINT = "endpoint";
    public static final String CONTEXT = "context";
    public static final String DOCUMENT_FIELDS = "document_fields";
    public static final String WINDOW = "window";
    public static final String INSTRUCTION = "instruction";
    public static final String INSTRUCTION_PRESET = "instruction_preset";
    public static final String ALPHA = "alpha";
    public static final String TIMEOUT = "timeout";
    public static final String FAIL_OPEN = "fail_open";
    public static final String EXPLAIN_REASONING = "explain_reasoning";

    public static final int DEFAULT_WINDOW = 50;
    /** OpenSearch's default {@code index.max_result_window}. */
    public static final int MAX_WINDOW = 10_000;
    public static final TimeValue DEFAULT_TIMEOUT = TimeValue.timeValueSeconds(10);
    static final TimeValue MAX_TIMEOUT = TimeValue.timeValueMinutes(5);
    public static final String RERANK_PATH = "/v1/rerank";

    private final URI endpoint;
    private final URI rerankUri;
    private final List<String> documentFields;
    private final int window;
    private final String instruction;
    private final String instructionPreset;
    private final Double alpha;
    private final Duration timeout;
    private final boolean failOpen;
    private final RerankOptions options;

    ErankConfig(
        URI endpoint,
        List<String> documentFields,
        int window,
        String instruction,
        String instructionPreset,
        Double alpha,
        Duration timeout,
        boolean failOpen,
        RerankOptions options
    ) {
        this.endpoint = endpoint;
        this.rerankUri = rerankUri(endpoint);
        this.documentFields = Collections.unmodifiableList(new ArrayList<>(documentFields));
        this.window = window;
        this.instruction = instruction;
        this.instructionPreset = instructionPreset;
        this.alpha = alpha;
        this.timeout = timeout;
        this.failOpen = failOpen;
        this.options = options;
    }

    /**
     * Reads (and removes) this processor's keys from {@code config}; whatever is left there is reported by
     * OpenSearch as unsupported parameters.
     */
    public static ErankConfig parse(String type, String tag, Map<String, Object> config) {
        String endpointText = ConfigurationUtils.readStringProperty(type, tag, config, ENDPOINT);
        URI endpoint = parseEndpoint(type, tag, endpointText);

        Map<String, Object> context = new HashMap<>(ConfigurationUtils.<Object>readMap(type, tag, config, CONTEXT));
        Object fieldsObject = context.remove(DOCUMENT_FIELDS);
        if (fieldsObject == null) {
            throw error(type, tag, CONTEXT + "." + DOCUMENT_FIELDS, "required property is missing");
        }
        List<String> fields = readFieldList(type, tag, fieldsObject);
        if (context.isEmpty() == false) {
            throw error(type, tag, CONTEXT, "unsupported key(s) " + new ArrayList<>(context.keySet()) + "; only [" + DOCUMENT_FIELDS + "]");
        }

        int window = readInt(type, tag, config, WINDOW, DEFAULT_WINDOW);
        if (window < 1 || window > MAX_WINDOW) {
            throw error(type, tag, WINDOW, "must be between 1 and " + MAX_WINDOW + ", got " + window);
        }

        String instruction = readOptionalNonBlank(type, tag, config, INSTRUCTION);
        String instructionPreset = readOptionalNonBlank(type, tag, config, INSTRUCTION_PRESET);
        if (instruction != null && instructionPreset != null) {
            throw error(type, tag, INSTRUCTION_PRESET, "cannot be combined with [" + INSTRUCTION + "]; give one of them");
        }

        Double alpha = readOptionalDouble(type, tag, config, ALPHA);
        if (alpha != null && (alpha.isNaN() || alpha < 0.0 || alpha > 1.0)) {
            throw error(type, tag, ALPHA, "must be between 0 and 1, got " + alpha);
        }

        Duration timeout = readTimeout(type, tag, config);
        boolean failOpen = ConfigurationUtils.readBooleanProperty(type, tag, config, FAIL_OPEN, true);
        RerankOptions options = readOptions(type, tag, config);
        return new ErankConfig(endpoint, fields, window, instruction, instructionPreset, alpha, timeout, failOpen, options);
    }

    /**
     * The scoring options ({@link RerankOptions}). Combinations the server would silently ignore are refused: an RRF
     * constant for another fusion method, a passage overlap when long documents are truncated, finishing cut
     * documents in the background when nothing is cut.
     */
    private static RerankOptions readOptions(String type, String tag, Map<String, Object> config) {
        String fusion = ConfigurationUtils.readOptionalStringProperty(type, tag, config, RerankOptions.FUSION);
        check(type, tag, RerankOptions.FUSION, fusion == null ? null : RerankOptions.checkFusion(fusion));
        Integer rankConstant = readOptionalInt(type, tag, config, RerankOptions.RANK_CONSTANT);
        check(type, tag, RerankOptions.RANK_CONSTANT, rankConstant == null ? null : RerankOptions.checkRankConstant(rankConstant));
        if (rankConstant != null && fusion != null && RerankOptions.FUSION_RRF.equals(fusion) == false) {
            throw error(type, tag, RerankOptions.RANK_CONSTANT, "applies only to [fusion] rrf, got fusion [" + fusion + "]");
        }
        String longDocuments = ConfigurationUtils.readOptionalStringProperty(type, tag, config, RerankOptions.LONG_DOCUMENTS);
        check(type, tag, RerankOptions.LONG_DOCUMENTS, longDocuments == null ? null : RerankOptions.checkLongDocuments(longDocuments));
        Integer passageOverlap = readOptionalInt(type, tag, config, RerankOptions.PASSAGE_OVERLAP);
        check(type, tag, RerankOptions.PASSAGE_OVERLAP, passageOverlap == null ? null : RerankOptions.checkPassageOverlap(passageOverlap));
        if (passageOverlap != null && longDocuments != null && RerankOptions.BEST_PASSAGE.equals(longDocuments) == false) {
            throw error(type, tag, RerankOptions.PASSAGE_OVERLAP, "applies only to [long_documents] best_passage, got [" + longDocuments + "]");
        }
        boolean reasoning = ConfigurationUtils.readBooleanProperty(type, tag, config, EXPLAIN_REASONING, false);
        String onBudget = ConfigurationUtils.readOptionalStringProperty(type, tag, config, RerankOptions.ON_BUDGET);
        check(type, tag, RerankOptions.ON_BUDGET, onBudget == null ? null : RerankOptions.checkOnBudget(onBudget));
        if (onBudget == null) {
            onBudget = RerankOptions.ON_BUDGET_CUT;
        }
        boolean background = ConfigurationUtils.readBooleanProperty(type, tag, config, RerankOptions.FINISH_IN_BACKGROUND, false);
        if (background && RerankOptions.ON_BUDGET_CUT.equals(onBudget) == false) {
            throw error(type, tag, RerankOptions.FINISH_IN_BACKGROUND, "applies only to [on_budget] cut, got [" + onBudget + "]");
        }
        return new RerankOptions(fusion, rankConstant, longDocuments, passageOverlap, reasoning, onBudget, background);
    }

    private static void check(String type, String tag, String key, String problem) {
        if (problem != null) {
            throw error(type, tag, key, problem);
        }
    }

    static URI parseEndpoint(String type, String tag, String text) {
        String trimmed = text.trim();
        URI uri;
        try {
            uri = new URI(trimmed);
        } catch (URISyntaxException e) {
            throw error(type, tag, ENDPOINT, "is not a valid URL: " + e.getMessage());
        }
        String scheme = uri.getScheme() == null ? null : uri.getScheme().toLowerCase(Locale.ROOT);
        if ("http".equals(scheme) == false && "https".equals(scheme) == false) {
            throw error(type, tag, ENDPOINT, "must be an http:// or https:// URL, got [" + text + "]");
        }
        if (uri.getHost() == null || uri.getHost().isEmpty()) {
            throw error(type, tag, ENDPOINT, "must name a host, got [" + text + "]");
        }
        if (uri.getRawQuery() != null || uri.getRawFragment() != null) {
            throw error(type, tag, ENDPOINT, "must not have a query or fragment, got [" + text + "]");
        }
        if (uri.getRawUserInfo() != null) {
            throw error(type, tag, ENDPOINT, "must not carry credentials, got a user-info part");
        }
        return uri;
    }

    static URI rerankUri(URI endpoint) {
        String base = endpoint.toString();
        while (base.endsWith("/")) {
            base = base.substring(0, base.length() - 1);
        }
        return URI.create(base + RERANK_PATH);
    }

    private static List<String> readFieldList(String type, String tag, Object value) {
        String name = CONTEXT + "." + DOCUMENT_FIELDS;
        if (value instanceof List == false) {
            throw error(type, tag, name, "must be a list of field names");
        }
        List<?> raw = (List<?>) value;
        if (raw.isEmpty()) {
            throw error(type, tag, name, "must not be empty");
        }
        List<String> fields = new ArrayList<>(raw.size());
        for (Object item : raw) {
            if (item instanceof String == false || ((String) item).trim().isEmpty()) {
                throw error(type, tag, name, "must hold non-empty strings, got [" + item + "]");
            }
            String field = ((String) item).trim();
            if (field.startsWith(".") || field.endsWith(".") || field.contains("..")) {
                throw error(type, tag, name, "holds a malformed field path [" + field + "]");
            }
            fields.add(field);
        }
        return fields;
    }

    /**
     * An optional string that must say something when given. The preset's name is not checked against a list here:
     * the REST front owns the presets and answers 400 for a name it does not know.
     */
    private static String readOptionalNonBlank(String type, String tag, Map<String, Object> config, String key) {
        String value = ConfigurationUtils.readOptionalStringProperty(type, tag, config, key);
        if (value != null && value.trim().isEmpty()) {
            throw error(type, tag, key, "must not be empty when given");
        }
        return value;
    }

    private static int readInt(String type, String tag, Map<String, Object> config, String key, int defaultValue) {
        Integer value = readOptionalInt(type, tag, config, key);
        return value == null ? defaultValue : value;
    }

    private static Integer readOptionalInt(String type, String tag, Map<String, Object> config, String key) {
        Object value = config.remove(key);
        if (value == null) {
            return null;
        }
        if (value instanceof Integer || value instanceof Long || value instanceof Short) {
            long l = ((Number) value).longValue();
            if (l > Integer.MAX_VALUE || l < Integer.MIN_VALUE) {
                throw error(type, tag, key, "is out of range: " + value);
            }
            return (int) l;
        }
        if (value instanceof String) {
            try {
                return Integer.parseInt(((String) value).trim());
            } catch (NumberFormatException e) {
                // fall through
            }
        }
        throw error(type, tag, key, "must be an integer, got [" + value + "]");
    }

    private static Double readOptionalDouble(String type, String tag, Map<String, Object> config, String key) {
        Object value = config.remove(key);
        if (value == null) {
            return null;
        }
        if (value instanceof Number) {
            return ((Number) value).doubleValue();
        }
        if (value instanceof String) {
            try {
                return Double.parseDouble(((String) value).trim());
            } catch (NumberFormatException e) {
                // fall through
            }
        }
        throw error(type, tag, key, "must be a number, got [" + value + "]");
    }

    private static Duration readTimeout(String type, String tag, Map<String, Object> config) {
        Object value = config.remove(TIMEOUT);
        TimeValue timeValue;
        if (value == null) {
            timeValue = DEFAULT_TIMEOUT;
        } else if (value instanceof Integer || value instanceof Long) {
            timeValue = TimeValue.timeValueMillis(((Number) value).longValue());
        } else if (value instanceof String) {
            try {
                timeValue = TimeValue.parseTimeValue((String) value, TIMEOUT);
            } catch (RuntimeException e) {
                throw error(type, tag, TIMEOUT, "is not a time value like \"5s\" or \"500ms\": [" + value + "]");
            }
        } else {
            throw error(type, tag, TIMEOUT, "must be a time value like \"5s\", got [" + value + "]");
        }
        if (timeValue.millis() <= 0) {
            throw error(type, tag, TIMEOUT, "must be positive, got [" + value + "]");
        }
        if (timeValue.millis() > MAX_TIMEOUT.millis()) {
            throw error(type, tag, TIMEOUT, "must be at most " + MAX_TIMEOUT + ", got [" + value + "]");
        }
        return Duration.ofMillis(timeValue.millis());
    }

    static OpenSearchException error(String type, String tag, String field, String reason) {
        return ConfigurationUtils.newConfigurationException(type, tag, field, reason);
    }

    public URI endpoint() {
        return endpoint;
    }

    /** {@code {endpoint}/v1/rerank}. */
    public URI rerankUri() {
        return rerankUri;
    }

    public List<String> documentFields() {
        return documentFields;
    }

    public int window() {
        return window;
    }

    /** {@code null} when not configured. */
    public String instruction() {
        return instruction;
    }

    /** {@code null} when not configured; never set together with {@link #instruction()}. */
    public String instructionPreset() {
        return instructionPreset;
    }

    /** {@code null} when not configured: the server's default applies. */
    public Double alpha() {
        return alpha;
    }

    public Duration timeout() {
        return timeout;
    }

    public boolean failOpen() {
        return failOpen;
    }

    /** The processor's scoring options: the defaults a search's {@code ext.erank} may override. */
    RerankOptions options() {
        return options;
    }
}
