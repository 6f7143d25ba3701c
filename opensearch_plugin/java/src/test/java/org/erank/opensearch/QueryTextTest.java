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

    private static String ofJson(String queryJson) throws Exception {
        return QueryText.fromJson(Fixtures.parse(queryJson));
    }

    @Test
    public void hybridTakesItsFirstLexicalSubQuery() throws Exception {
        assertEquals(
            "how do rerankers work",
            ofJson(
                "{\"hybrid\":{\"queries\":[{\"knn\":{\"vec\":{\"vector\":[0.1,0.2],\"k\":5}}},"
                    + "{\"match\":{\"body\":{\"query\":\"how do rerankers work\"}}},"
                    + "{\"match\":{\"title\":\"a second lexical clause\"}}]}}"
            )
        );
    }

    @Test
    public void boolWithAKnnClauseTakesItsLexicalClauses() throws Exception {
        assertEquals(
            "rerankers",
            ofJson("{\"bool\":{\"should\":[{\"knn\":{\"vec\":{\"vector\":[1,0],\"k\":3}}},{\"match\":{\"body\":\"rerankers\"}}]}}")
        );
    }

    @Test
    public void knnOnlyHasNoTextButTheExtGivesIt() throws Exception {
        assertNull(ofJson("{\"knn\":{\"vec\":{\"vector\":[1,0],\"k\":3}}}"));
        assertNull(ofJson("{\"hybrid\":{\"queries\":[{\"knn\":{\"vec\":{\"vector\":[1,0],\"k\":3}}}]}}"));
        SearchSourceBuilder source = new SearchSourceBuilder().ext(
            Collections.singletonList(new ErankSearchExtBuilder(Collections.singletonMap("query_text", "vector question")))
        );
        assertEquals("vector question", of(source));
    }

    @Test
    public void shorthandAndSingleClauseForms() throws Exception {
        assertEquals("a b", ofJson("{\"bool\":{\"must\":{\"match\":{\"f\":\"a\"}},\"should\":{\"combined_fields\":{\"query\":\"b\"}}}}"));
        assertNull("numbers are text, booleans and objects are not", ofJson("{\"match\":{\"f\":{\"operator\":\"and\"}}}"));
    }

    @Test
    public void noTextGivesNull() {
        assertNull(of(new SearchSourceBuilder().query(QueryBuilders.termQuery("id", "x"))));
        assertNull(of(new SearchSourceBuilder()));
        assertNull(QueryText.of(new org.opensearch.action.search.SearchRequest("i")));
    }
}
