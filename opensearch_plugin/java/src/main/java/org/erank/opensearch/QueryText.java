package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.index.query.BoolQueryBuilder;
import org.opensearch.index.query.BoostingQueryBuilder;
import org.opensearch.index.query.ConstantScoreQueryBuilder;
import org.opensearch.index.query.DisMaxQueryBuilder;
import org.opensearch.index.query.MatchBoolPrefixQueryBuilder;
import org.opensearch.index.query.MatchPhrasePrefixQueryBuilder;
import org.opensearch.index.query.MatchPhraseQueryBuilder;
import org.opensearch.index.query.MatchQueryBuilder;
import org.opensearch.index.query.MultiMatchQueryBuilder;
import org.opensearch.index.query.NestedQueryBuilder;
import org.opensearch.index.query.QueryBuilder;
import org.opensearch.index.query.QueryStringQueryBuilder;
import org.opensearch.index.query.SimpleQueryStringBuilder;
import org.opensearch.index.query.functionscore.FunctionScoreQueryBuilder;
import org.opensearch.index.query.functionscore.ScriptScoreQueryBuilder;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.builder.SearchSourceBuilder;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Where the query text sent to the reranker comes from, in order:
 * <ol>
 *   <li>the request's {@code "ext": {"erank": {"query_text": "..."}}};</li>
 *   <li>the full-text clauses of the query itself: {@code match}, {@code match_phrase}, {@code match_phrase_prefix},
 *       {@code match_bool_prefix}, {@code multi_match}, {@code query_string}, {@code simple_query_string}, found
 *       through {@code bool} (must/should), {@code dis_max}, {@code boosting} (positive), {@code constant_score},
 *       {@code function_score}, {@code script_score} and {@code nested}; distinct texts are joined with a space.</li>
 * </ol>
 * Filters, {@code must_not} and term-level queries are ignored: they rarely hold what the user asked.
 */
public final class QueryText {

    private QueryText() {}

    /** {@code null} when the request holds no usable query text. */
    public static String of(SearchRequest request) {
        SearchSourceBuilder source = request.source();
        if (source == null) {
            return null;
        }
        List<SearchExtBuilder> exts = source.ext();
        if (exts != null) {
            for (SearchExtBuilder ext : exts) {
                if (ext instanceof ErankSearchExtBuilder) {
                    String text = ((ErankSearchExtBuilder) ext).queryText();
                    if (text != null && text.trim().isEmpty() == false) {
                        return text;
                    }
                }
            }
        }
        return fromQuery(source.query());
    }

    static String fromQuery(QueryBuilder query) {
        Set<String> texts = new LinkedHashSet<>();
        collect(query, texts, 0);
        if (texts.isEmpty()) {
            return null;
        }
        return String.join(" ", texts);
    }

    private static void collect(QueryBuilder query, Set<String> out, int depth) {
        if (query == null || depth > 32) {
            return;
        }
        if (query instanceof MatchQueryBuilder) {
            add(((MatchQueryBuilder) query).value(), out);
        } else if (query instanceof MatchPhraseQueryBuilder) {
            add(((MatchPhraseQueryBuilder) query).value(), out);
        } else if (query instanceof MatchPhrasePrefixQueryBuilder) {
            add(((MatchPhrasePrefixQueryBuilder) query).value(), out);
        } else if (query instanceof MatchBoolPrefixQueryBuilder) {
            add(((MatchBoolPrefixQueryBuilder) query).value(), out);
        } else if (query instanceof MultiMatchQueryBuilder) {
            add(((MultiMatchQueryBuilder) query).value(), out);
        } else if (query instanceof QueryStringQueryBuilder) {
            add(((QueryStringQueryBuilder) query).queryString(), out);
        } else if (query instanceof SimpleQueryStringBuilder) {
            add(((SimpleQueryStringBuilder) query).value(), out);
        } else if (query instanceof BoolQueryBuilder) {
            BoolQueryBuilder bool = (BoolQueryBuilder) query;
            for (QueryBuilder clause : bool.must()) {
                collect(clause, out, depth + 1);
            }
            for (QueryBuilder clause : bool.should()) {
                collect(clause, out, depth + 1);
            }
        } else if (query instanceof DisMaxQueryBuilder) {
            for (QueryBuilder clause : ((DisMaxQueryBuilder) query).innerQueries()) {
                collect(clause, out, depth + 1);
            }
        } else if (query instanceof BoostingQueryBuilder) {
            collect(((BoostingQueryBuilder) query).positiveQuery(), out, depth + 1);
        } else if (query instanceof ConstantScoreQueryBuilder) {
            collect(((ConstantScoreQueryBuilder) query).innerQuery(), out, depth + 1);
        } else if (query instanceof FunctionScoreQueryBuilder) {
            collect(((FunctionScoreQueryBuilder) query).query(), out, depth + 1);
        } else if (query instanceof ScriptScoreQueryBuilder) {
            collect(((ScriptScoreQueryBuilder) query).query(), out, depth + 1);
        } else if (query instanceof NestedQueryBuilder) {
            collect(((NestedQueryBuilder) query).query(), out, depth + 1);
        }
    }

    private static void add(Object value, Set<String> out) {
        if (value == null) {
            return;
        }
        String text = String.valueOf(value).trim();
        if (text.isEmpty() == false) {
            out.add(text);
        }
    }
}
