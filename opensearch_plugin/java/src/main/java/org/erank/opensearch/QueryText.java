package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.common.xcontent.XContentFactory;
import org.opensearch.core.xcontent.ToXContent;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.index.query.QueryBuilder;

import java.io.IOException;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Where the query text sent to the reranker comes from, in order:
 * <ol>
 *   <li>the request's {@code "ext": {"erank": {"query_text": "..."}}};</li>
 *   <li>the full-text clauses of the query itself: {@code match}, {@code match_phrase}, {@code match_phrase_prefix},
 *       {@code match_bool_prefix}, {@code multi_match}, {@code combined_fields}, {@code query_string},
 *       {@code simple_query_string}, found through {@code bool} (must/should), {@code dis_max}, {@code boosting}
 *       (positive), {@code constant_score}, {@code function_score}, {@code script_score} and {@code nested}; distinct
 *       texts are joined with a space;</li>
 *   <li>of a {@code hybrid} query (neural-search), the first sub-query that has such text: its other sub-queries
 *       are usually the same question as a vector, so joining them could only repeat it.</li>
 * </ol>
 * Filters, {@code must_not}, term-level queries and vector queries ({@code knn}, {@code neural}) are ignored: they
 * hold no words the user typed, so a kNN-only search has no query text unless {@code ext.erank.query_text} gives it,
 * and is skipped ({@code no_query_text}) rather than reranked against a guess.
 *
 * <p>The query is read in its JSON form, the form every query builder writes, so queries of other plugins
 * ({@code hybrid}, {@code knn}) are read without depending on their classes, and the same rules apply to a request
 * body as the user wrote it (shorthand {@code {"match": {"body": "text"}}} included) as to the parsed query.
 */
public final class QueryText {

    /** Full-text queries of the form {@code {"<kind>": {"<field>": "text" | {"query": "text", ...}}}}. */
    private static final List<String> FIELD_QUERIES = Arrays.asList("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix");
    /** Full-text queries of the form {@code {"<kind>": {"query": "text", ...}}}. */
    private static final List<String> QUERY_KEY_QUERIES = Arrays.asList("multi_match", "combined_fields", "query_string", "simple_query_string");
    /** Compound queries whose scoring clause is under one key. */
    private static final Map<String, String> WRAPPERS = Map.of(
        "boosting", "positive",
        "constant_score", "filter",
        "function_score", "query",
        "script_score", "query",
        "nested", "query"
    );
    private static final int MAX_DEPTH = 32;

    private QueryText() {}

    /** {@code null} when the request holds no usable query text. */
    public static String of(SearchRequest request) {
        ErankSearchExtBuilder ext = ErankSearchExtBuilder.of(request);
        if (ext != null && ext.queryText() != null && ext.queryText().trim().isEmpty() == false) {
            return ext.queryText();
        }
        return request.source() == null ? null : fromQuery(request.source().query());
    }

    static String fromQuery(QueryBuilder query) {
        return query == null ? null : fromJson(asMap(query));
    }

    /** The query text of a query in its JSON form ({@code {"match": {...}}}), or {@code null}. */
    static String fromJson(Object query) {
        Set<String> texts = new LinkedHashSet<>();
        collect(query, texts, 0);
        return texts.isEmpty() ? null : String.join(" ", texts);
    }

    private static void collect(Object query, Set<String> out, int depth) {
        if (query instanceof Map == false || depth > MAX_DEPTH) {
            return;
        }
        for (Map.Entry<?, ?> entry : ((Map<?, ?>) query).entrySet()) {
            String kind = String.valueOf(entry.getKey());
            if (entry.getValue() instanceof Map == false) {
                continue;
            }
            Map<?, ?> spec = (Map<?, ?>) entry.getValue();
            if (FIELD_QUERIES.contains(kind)) {
                for (Object value : spec.values()) {
                    add(value instanceof Map ? ((Map<?, ?>) value).get("query") : value, out);
                }
            } else if (QUERY_KEY_QUERIES.contains(kind)) {
                add(spec.get("query"), out);
            } else if ("bool".equals(kind)) {
                for (Object clause : clauses(spec.get("must"))) {
                    collect(clause, out, depth + 1);
                }
                for (Object clause : clauses(spec.get("should"))) {
                    collect(clause, out, depth + 1);
                }
            } else if ("dis_max".equals(kind)) {
                for (Object clause : clauses(spec.get("queries"))) {
                    collect(clause, out, depth + 1);
                }
            } else if ("hybrid".equals(kind)) {
                for (Object clause : clauses(spec.get("queries"))) {
                    String text = fromJson(clause);
                    if (text != null) {
                        out.add(text);
                        break;
                    }
                }
            } else if (WRAPPERS.containsKey(kind)) {
                collect(spec.get(WRAPPERS.get(kind)), out, depth + 1);
            }
        }
    }

    /** A clause list as JSON allows it: one query or a list of them. */
    private static List<?> clauses(Object value) {
        if (value instanceof List) {
            return (List<?>) value;
        }
        return value == null ? Collections.emptyList() : Collections.singletonList(value);
    }

    private static void add(Object value, Set<String> out) {
        if (value == null || value instanceof Map || value instanceof List || value instanceof Boolean) {
            return;
        }
        String text = String.valueOf(value).trim();
        if (text.isEmpty() == false) {
            out.add(text);
        }
    }

    private static Map<String, Object> asMap(QueryBuilder query) {
        try (XContentBuilder builder = XContentFactory.jsonBuilder()) {
            query.toXContent(builder, ToXContent.EMPTY_PARAMS);
            return RerankCodec.parseObject(builder.toString());
        } catch (IOException e) {
            throw new IllegalStateException("cannot read the query [" + query.getName() + "]", e);
        }
    }
}
