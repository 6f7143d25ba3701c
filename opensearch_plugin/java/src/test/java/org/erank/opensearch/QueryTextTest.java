package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.index.query.QueryBuilders;
import org.opensearch.search.builder.SearchSourceBuilder;

import java.util.Collections;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;

public class QueryTextTest {

    private static String of(SearchSourceBuilder source) {
        return QueryText.of(Fixtures.request(source));
    }

    @Test
    public void matchQuery() {
        assertEquals("what is bm25", of(new SearchSourceBuilder().query(QueryBuilders.matchQuery("body", "what is bm25"))));
    }

    @Test
    public void fullTextClausesThroughCompoundQueries() {
        SearchSourceBuilder source = new SearchSourceBuilder().query(
            QueryBuilders.boolQuery()
                .must(QueryBuilders.multiMatchQuery("neural rerank", "title", "body"))
                .should(QueryBuilders.matchPhraseQuery("title", "cross encoder"))
                .should(QueryBuilders.constantScoreQuery(QueryBuilders.simpleQueryStringQuery("llm")))
                .should(QueryBuilders.matchQuery("body", "neural rerank")) // duplicate text, kept once
                .filter(QueryBuilders.matchQuery("lang", "en")) // filters are ignored
                .mustNot(QueryBuilders.matchQuery("body", "spam"))
        );
        assertEquals("neural rerank cross encoder llm", of(source));
    }

    @Test
    public void disMaxBoostingFunctionScoreQueryString() {
        SearchSourceBuilder source = new SearchSourceBuilder().query(
            QueryBuilders.disMaxQuery()
                .add(QueryBuilders.boostingQuery(QueryBuilders.queryStringQuery("a OR b"), QueryBuilders.matchQuery("x", "neg")))
                .add(QueryBuilders.functionScoreQuery(QueryBuilders.matchBoolPrefixQuery("f", "prefix q")))
        );
        assertEquals("a OR b prefix q", of(source));
    }

    @Test
    public void extOverridesTheQuery() {
        SearchSourceBuilder source = new SearchSourceBuilder().query(QueryBuilders.matchQuery("body", "bm25 words"))
            .ext(Collections.singletonList(new ErankSearchExtBuilder(Collections.singletonMap("query_text", "the real question?"))));
        assertEquals("the real question?", of(source));
    }

    @Test
    public void noTextGivesNull() {
        assertNull(of(new SearchSourceBuilder().query(QueryBuilders.termQuery("id", "x"))));
        assertNull(of(new SearchSourceBuilder()));
        assertNull(QueryText.of(new org.opensearch.action.search.SearchRequest("i")));
    }
}
