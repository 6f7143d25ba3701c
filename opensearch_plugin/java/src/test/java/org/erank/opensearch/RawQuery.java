package org.erank.opensearch;

import org.apache.lucene.search.Query;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;
import org.opensearch.index.query.AbstractQueryBuilder;
import org.opensearch.index.query.QueryShardContext;
import org.opensearch.plugins.SearchPlugin;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Stands in for the query builders of plugins these tests do not have (k-NN's {@code knn}, neural-search's
 * {@code hybrid}): keeps the query's body as parsed and writes it back as is, which is all {@link QueryText} reads of
 * any query (its JSON form).
 */
final class RawQuery extends AbstractQueryBuilder<RawQuery> {

    private final String name;
    private final Map<String, Object> body;

    RawQuery(String name, Map<String, Object> body) {
        this.name = name;
        this.body = body;
    }

    RawQuery(String name, StreamInput in) throws IOException {
        super(in);
        this.name = name;
        this.body = in.readMap();
    }

    @Override
    protected void doWriteTo(StreamOutput out) throws IOException {
        out.writeMap(body);
    }

    @Override
    protected void doXContent(XContentBuilder builder, Params params) throws IOException {
        builder.field(name, body);
    }

    @Override
    protected Query doToQuery(QueryShardContext context) {
        throw new UnsupportedOperationException("a stand-in for [" + name + "] cannot search");
    }

    @Override
    protected boolean doEquals(RawQuery other) {
        return name.equals(other.name) && body.equals(other.body);
    }

    @Override
    protected int doHashCode() {
        return Objects.hash(name, body);
    }

    @Override
    public String getWriteableName() {
        return name;
    }

    /** Registers the stand-ins as a search plugin would its queries. */
    static final class Plugin extends org.opensearch.plugins.Plugin implements SearchPlugin {
        private static final List<String> NAMES = Arrays.asList("knn", "hybrid");

        @Override
        public List<QuerySpec<?>> getQueries() {
            return Arrays.asList(spec(NAMES.get(0)), spec(NAMES.get(1)));
        }

        private static QuerySpec<RawQuery> spec(String name) {
            return new QuerySpec<RawQuery>(name, in -> new RawQuery(name, in), (XContentParser parser) -> new RawQuery(name, parser.map()));
        }
    }
}
