package org.erank.opensearch;

import org.apache.lucene.search.Explanation;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.search.SearchResponseSections;
import org.opensearch.common.document.DocumentField;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchHits;
import org.opensearch.search.profile.SearchProfileShardResults;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns the engine's response into the one {@code erank} hands back, for each outcome: reranked, failed open or
 * skipped. Apart from the scoring call so that every outcome is shaped the same way: the user's page is cut (when
 * {@code erank_window} ran), {@code ext.erank} says what happened, and {@code took} includes the time the processor
 * added.
 *
 * <p>Reranked: the top hits by the server's {@code relevance_score}, which becomes their {@code _score}; the hits
 * below the window keep their first-stage order and score below every reranked hit
 * ({@link Reorder#belowWindowScore}). Every hit of the window and below it carries {@code fields._erank} with its
 * first-stage score and rank, and, when the server gave them, its {@code reasoning} (only when it was asked for:
 * {@link RerankOptions#reasoning()}) and best {@code passage}; every reranked hit says how its answer was reached
 * ({@code completion}: {@code full}, {@code cut} or {@code unscored}) and, when the server said, after how many
 * {@code thinking_tokens}; nothing is written into {@code _source}. With
 * {@code explain: true} the explanation's value is the new {@code _score}.
 */
final class ResponseRewriter {

    /** Name of the per-hit entry in the hit's {@code fields}. */
    static final String HIT_FIELD = "_erank";

    private final SearchResponse response;
    private final PageRequest page;
    private final int window;
    private final long startNanos;

    /** {@code page} is {@code null} when {@code erank_window} did not run; {@code startNanos} is when erank began. */
    ResponseRewriter(SearchResponse response, PageRequest page, int window, long startNanos) {
        this.response = response;
        this.page = page;
        this.window = window;
        this.startNanos = startNanos;
    }

    SearchResponse reranked(RerankResponse reply, RerankDocuments documents, RerankOptions options) {
        SearchHit[] hits = response.getHits().getHits();
        int reranked = documents.size();
        int[] order = Reorder.order(hits.length, reply.results());
        RerankResponse.Result[] byIndex = new RerankResponse.Result[reranked];
        float lowest = Float.POSITIVE_INFINITY;
        float highest = Float.NEGATIVE_INFINITY;
        for (RerankResponse.Result r : reply.results()) {
            byIndex[r.index()] = r;
            lowest = Math.min(lowest, (float) r.relevanceScore());
            highest = Math.max(highest, (float) r.relevanceScore());
        }
        List<SearchHit> ordered = new ArrayList<>(hits.length);
        for (int original : order) {
            SearchHit hit = hits[original];
            Map<String, Object> info = firstStageInfo(hit, original);
            Explanation engineExplanation = hit.getExplanation();
            float score;
            if (original < reranked) {
                RerankResponse.Result r = byIndex[original];
                score = (float) r.relevanceScore();
                String reasoning = options.reasoning() ? r.reasoning() : null;
                putResult(info, r, reasoning, documents.text(original));
                if (engineExplanation != null) {
                    hit.explanation(RerankExplanation.reranked(score, engineExplanation, r, reply.fusion(), reasoning));
                }
            } else {
                int distance = original - reranked;
                score = Reorder.belowWindowScore(lowest, distance);
                info.put("below_window", true);
                if (engineExplanation != null) {
                    hit.explanation(RerankExplanation.belowWindow(score, engineExplanation, lowest, distance));
                }
            }
            hit.score(score);
            hit.setDocumentField(HIT_FIELD, new DocumentField(HIT_FIELD, Collections.singletonList(info)));
            ordered.add(hit);
        }
        return rebuild(cut(ordered), highest, ErankMarker.reranked(reply, reranked, documents.missingText()));
    }

    /** The engine's own order and scores, cut to the page, marked as failed open. */
    SearchResponse failed(RerankException error) {
        return unranked(ErankMarker.failed(error));
    }

    /** The engine's own order and scores, cut to the page, marked as skipped. */
    SearchResponse skipped(ErankMarker marker) {
        return unranked(marker);
    }

    private SearchResponse unranked(ErankMarker marker) {
        List<SearchHit> all = Arrays.asList(response.getHits().getHits());
        return rebuild(cut(all), response.getHits().getMaxScore(), marker);
    }

    private static Map<String, Object> firstStageInfo(SearchHit hit, int original) {
        Map<String, Object> info = new LinkedHashMap<>();
        if (Float.isFinite(hit.getScore())) {
            info.put("bm25_score", hit.getScore());
        }
        info.put("bm25_rank", original + 1);
        return info;
    }

    private static void putResult(Map<String, Object> info, RerankResponse.Result r, String reasoning, HitText text) {
        info.put("relevance_score", r.relevanceScore());
        putIfNotNull(info, "rank_score", r.rankScore());
        putIfNotNull(info, "hybrid_score", r.hybridScore());
        putIfNotNull(info, "answer", r.answer());
        putIfNotNull(info, "answer_probability", r.answerProbability());
        putIfNotNull(info, "status", r.status());
        putIfNotNull(info, "reasoning", reasoning);
        putIfNotNull(info, "passage", r.passage());
        putIfNotNull(info, RerankCodec.COMPLETION, r.completion());
        putIfNotNull(info, RerankCodec.THINKING_TOKENS, r.thinkingTokens());
        if (text.missing()) {
            info.put("text_missing", true);
        }
    }

    private static void putIfNotNull(Map<String, Object> map, String key, Object value) {
        if (value != null) {
            map.put(key, value);
        }
    }

    private List<SearchHit> cut(List<SearchHit> hits) {
        return page == null ? hits : page.cut(hits);
    }

    /** A copy of the response with other hits, max score and {@code ext.erank}, and the processor's time in took. */
    private SearchResponse rebuild(List<SearchHit> hits, float maxScore, ErankMarker marker) {
        long firstStageMillis = response.getTook().millis();
        long rerankNanos = System.nanoTime() - startNanos;
        Map<String, Object> values = marker.finish(window, firstStageMillis, rerankNanos);
        SearchHits oldHits = response.getHits();
        SearchHits newHits = new SearchHits(
            hits.toArray(new SearchHit[0]),
            oldHits.getTotalHits(),
            maxScore,
            oldHits.getSortFields(),
            oldHits.getCollapseField(),
            oldHits.getCollapseValues()
        );
        SearchResponseSections oldSections = response.getInternalResponse();
        List<SearchExtBuilder> exts = new ArrayList<>();
        if (oldSections != null && oldSections.getSearchExtBuilders() != null) {
            for (SearchExtBuilder ext : oldSections.getSearchExtBuilders()) {
                if (ErankSearchExtBuilder.NAME.equals(ext.getWriteableName()) == false) {
                    exts.add(ext);
                }
            }
        }
        exts.add(new ErankSearchExtBuilder(values));
        SearchResponseSections sections = new SearchResponseSections(
            newHits,
            response.getAggregations(),
            response.getSuggest(),
            response.isTimedOut(),
            response.isTerminatedEarly(),
            // an empty profile section would render "profile": {"shards": []} on a search that never asked for one
            response.getProfileResults() == null || response.getProfileResults().isEmpty()
                ? null
                : new SearchProfileShardResults(response.getProfileResults()),
            response.getNumReducePhases(),
            exts,
            oldSections == null ? new ArrayList<>() : oldSections.getProcessorResult()
        );
        return new SearchResponse(
            sections,
            response.getScrollId(),
            response.getTotalShards(),
            response.getSuccessfulShards(),
            response.getSkippedShards(),
            firstStageMillis + Math.round(rerankNanos / 1_000_000.0),
            response.getPhaseTook(),
            response.getShardFailures(),
            response.getClusters(),
            response.pointInTimeId()
        );
    }
}
