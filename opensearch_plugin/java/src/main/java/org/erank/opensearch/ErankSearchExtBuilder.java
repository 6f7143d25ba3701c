package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.core.common.ParsingException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.builder.SearchSourceBuilder;

import java.io.IOException;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The {@code erank} section of a search's {@code ext}, in both directions.
 *
 * <ul>
 *   <li>Request: {@code "ext": {"erank": {"query_text": "what the reranker should read"}}} overrides the query
 *       text otherwise taken from the query's full-text clauses (and is the only query text a kNN-only search has);
 *       {@code fusion}, {@code rank_constant}, {@code long_documents}, {@code passage_overlap}, {@code on_budget}
 *       and {@code finish_in_background} override the processor's options for this search, and
 *       {@code "explain": true} asks for the server's reasoning ({@link RerankOptions}). Values are checked here, so
 *       a bad one is the search's 400, not a failed call.</li>
 *   <li>Response: the {@code erank} processor always writes {@code "ext": {"erank": {"status": ...}}}, the
 *       top-level marker of what it did ({@code reranked}, {@code failed}, {@code skipped}); see README.</li>
 * </ul>
 * Registered through {@code SearchPlugin#getSearchExts}, so OpenSearch both parses it in requests and knows
 * how to serialize it between nodes.
 */
public final class ErankSearchExtBuilder extends SearchExtBuilder {

    public static final String NAME = "erank";
    public static final String QUERY_TEXT = "query_text";
    public static final String EXPLAIN = "explain";
    static final List<String> REQUEST_KEYS = Collections.unmodifiableList(
        Arrays.asList(
            QUERY_TEXT,
            RerankOptions.FUSION,
            RerankOptions.RANK_CONSTANT,
            RerankOptions.LONG_DOCUMENTS,
            RerankOptions.PASSAGE_OVERLAP,
            RerankOptions.ON_BUDGET,
            RerankOptions.FINISH_IN_BACKGROUND,
            EXPLAIN
        )
    );

    private final Map<String, Object> values;

    public ErankSearchExtBuilder(Map<String, Object> values) {
        this.values = Collections.unmodifiableMap(new LinkedHashMap<>(values));
    }

    public ErankSearchExtBuilder(StreamInput in) throws IOException {
        Map<String, Object> read = in.readMap();
        this.values = Collections.unmodifiableMap(new LinkedHashMap<>(read));
    }

    /** Parses the request form; the parser is on the section's START_OBJECT. */
    public static ErankSearchExtBuilder parse(XContentParser parser) throws IOException {
        if (parser.currentToken() != XContentParser.Token.START_OBJECT) {
            throw new ParsingException(parser.getTokenLocation(), "[ext." + NAME + "] must be an object");
        }
        Map<String, Object> map = parser.map();
        for (Map.Entry<String, Object> entry : map.entrySet()) {
            String problem = problem(entry.getKey(), entry.getValue());
            if (problem != null) {
                throw new ParsingException(parser.getTokenLocation(), "[ext." + NAME + "." + entry.getKey() + "] " + problem);
            }
        }
        return new ErankSearchExtBuilder(map);
    }

    /** Why {@code value} is not acceptable for request key {@code key}, or {@code null}. */
    private static String problem(String key, Object value) {
        switch (key) {
            case QUERY_TEXT:
                return value instanceof String ? null : "must be a string";
            case RerankOptions.FUSION:
                return value instanceof String ? RerankOptions.checkFusion((String) value) : "must be a string";
            case RerankOptions.LONG_DOCUMENTS:
                return value instanceof String ? RerankOptions.checkLongDocuments((String) value) : "must be a string";
            case RerankOptions.RANK_CONSTANT:
                return isInteger(value) ? RerankOptions.checkRankConstant(((Number) value).longValue()) : "must be an integer";
            case RerankOptions.PASSAGE_OVERLAP:
                return isInteger(value) ? RerankOptions.checkPassageOverlap(((Number) value).longValue()) : "must be an integer";
            case RerankOptions.ON_BUDGET:
                return value instanceof String ? RerankOptions.checkOnBudget((String) value) : "must be a string";
            case RerankOptions.FINISH_IN_BACKGROUND:
            case EXPLAIN:
                return value instanceof Boolean ? null : "must be true or false";
            default:
                return "is not supported; supported: " + REQUEST_KEYS;
        }
    }

    private static boolean isInteger(Object value) {
        return value instanceof Integer || value instanceof Long || value instanceof Short;
    }

    /** {@code null} unless this is a request section holding a query text. */
    public String queryText() {
        Object value = values.get(QUERY_TEXT);
        return value instanceof String ? (String) value : null;
    }

    /** The search's {@code fusion}, or {@code null}. */
    String fusion() {
        Object value = values.get(RerankOptions.FUSION);
        return value instanceof String ? (String) value : null;
    }

    Integer rankConstant() {
        Object value = values.get(RerankOptions.RANK_CONSTANT);
        return value instanceof Number ? ((Number) value).intValue() : null;
    }

    String longDocuments() {
        Object value = values.get(RerankOptions.LONG_DOCUMENTS);
        return value instanceof String ? (String) value : null;
    }

    Integer passageOverlap() {
        Object value = values.get(RerankOptions.PASSAGE_OVERLAP);
        return value instanceof Number ? ((Number) value).intValue() : null;
    }

    /** The search's {@code on_budget}, or {@code null}. */
    String onBudget() {
        Object value = values.get(RerankOptions.ON_BUDGET);
        return value instanceof String ? (String) value : null;
    }

    /** The search's {@code finish_in_background}, or {@code null}. */
    Boolean finishInBackground() {
        Object value = values.get(RerankOptions.FINISH_IN_BACKGROUND);
        return value instanceof Boolean ? (Boolean) value : null;
    }

    /** Whether the search asked for the server's reasoning. */
    boolean explain() {
        return Boolean.TRUE.equals(values.get(EXPLAIN));
    }

    /** The request section of {@code request}, or {@code null} when it has none. */
    static ErankSearchExtBuilder of(SearchRequest request) {
        SearchSourceBuilder source = request.source();
        if (source == null || source.ext() == null) {
            return null;
        }
        for (SearchExtBuilder ext : source.ext()) {
            if (ext instanceof ErankSearchExtBuilder) {
                return (ErankSearchExtBuilder) ext;
            }
        }
        return null;
    }

    public Map<String, Object> values() {
        return values;
    }

    @Override
    public String getWriteableName() {
        return NAME;
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        out.writeMap(values);
    }

    @Override
    public XContentBuilder toXContent(XContentBuilder builder, Params params) throws IOException {
        return builder.field(NAME, values);
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (o == null || getClass() != o.getClass()) {
            return false;
        }
        return values.equals(((ErankSearchExtBuilder) o).values);
    }

    @Override
    public int hashCode() {
        return Objects.hash(NAME, values);
    }
}
