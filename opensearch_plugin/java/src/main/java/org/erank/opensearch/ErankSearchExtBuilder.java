package org.erank.opensearch;

import org.opensearch.core.common.ParsingException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;
import org.opensearch.search.SearchExtBuilder;

import java.io.IOException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The {@code erank} section of a search's {@code ext}, in both directions.
 *
 * <ul>
 *   <li>Request: {@code "ext": {"erank": {"query_text": "what the reranker should read"}}} overrides the query
 *       text otherwise taken from the query's full-text clauses.</li>
 *   <li>Response: the {@code erank} processor always writes {@code "ext": {"erank": {"status": ...}}}, the
 *       top-level marker of what it did ({@code reranked}, {@code failed}, {@code skipped}); see README.</li>
 * </ul>
 * Registered through {@code SearchPlugin#getSearchExts}, so OpenSearch both parses it in requests and knows
 * how to serialize it between nodes.
 */
public final class ErankSearchExtBuilder extends SearchExtBuilder {

    public static final String NAME = "erank";
    public static final String QUERY_TEXT = "query_text";

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
            if (QUERY_TEXT.equals(entry.getKey()) == false) {
                throw new ParsingException(
                    parser.getTokenLocation(),
                    "[ext." + NAME + "] does not support [" + entry.getKey() + "]; supported: [" + QUERY_TEXT + "]"
                );
            }
            if (entry.getValue() instanceof String == false) {
                throw new ParsingException(parser.getTokenLocation(), "[ext." + NAME + "." + QUERY_TEXT + "] must be a string");
            }
        }
        return new ErankSearchExtBuilder(map);
    }

    /** {@code null} unless this is a request section holding a query text. */
    public String queryText() {
        Object value = values.get(QUERY_TEXT);
        return value instanceof String ? (String) value : null;
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
