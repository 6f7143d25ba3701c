package org.erank.opensearch;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.opensearch.OpenSearchStatusException;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.search.SearchResponseSections;
import org.opensearch.action.support.ContextPreservingActionListener;
import org.opensearch.common.document.DocumentField;
import org.opensearch.common.util.concurrent.ThreadContext;
import org.opensearch.core.action.ActionListener;
import org.opensearch.core.rest.RestStatus;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchHits;
import org.opensearch.search.pipeline.AbstractProcessor;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;
import org.opensearch.search.profile.SearchProfileShardResults;
import org.opensearch.threadpool.Scheduler;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiFunction;
import java.util.function.Supplier;

/**
 * Response processor {@code erank}: sends the query and the text of the top {@code window} hits (with their
 * first-stage {@code _score}s) to the scoring server's {@code POST /v1/rerank}, reorders those hits by the returned
 * {@code relevance_score} (the server's fusion of the ERank score with the first-stage score), keeps the hits past
 * the window below them in their original order, and, when {@code erank_window} ran, cuts the user's page.
 *
 * <p>Per hit, {@code fields._erank} holds {@code bm25_score}, {@code bm25_rank}, {@code relevance_score},
 * {@code rank_score}, {@code hybrid_score}, {@code answer}, {@code answer_probability}, {@code status}; never
 * anything in {@code _source}. The response's {@code ext.erank} says what happened ({@code reranked},
 * {@code failed}, {@code skipped}).
 *
 * <p>Fail-open (default): a timeout, connection error, non-2xx or malformed reply returns the engine's own order
 * (still cut to the page), without {@code _erank} on any hit, and {@code ext.erank.status = "failed"}. With
 * {@code fail_open: false} the error goes to the pipeline instead, where {@code ignore_failure} decides.
 */
public final class ErankRerankProcessor extends AbstractProcessor implements SearchResponseProcessor {

    public static final String TYPE = "erank";
    /** Name of the per-hit entry in the hit's {@code fields}. */
    public static final String HIT_FIELD = "_erank";

    public static final String STATUS_RERANKED = "reranked";
    public static final String STATUS_FAILED = "failed";
    public static final String STATUS_SKIPPED = "skipped";

    private static final Logger logger = LogManager.getLogger(ErankRerankProcessor.class);

    private static final long WARN_INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(10);

    private final ErankConfig config;
    private final AtomicLong lastWarnNanos = new AtomicLong();
    private final Supplier<RerankTransport> transport;
    private final ThreadContext threadContext;
    private final BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler;

    ErankRerankProcessor(
        String tag,
        String description,
        boolean ignoreFailure,
        ErankConfig config,
        Supplier<RerankTransport> transport,
        ThreadContext threadContext,
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler
    ) {
        super(tag, description, ignoreFailure);
        this.config = config;
        this.transport = transport;
        this.threadContext = threadContext;
        this.scheduler = scheduler;
    }

    @Override
    public String getType() {
        return TYPE;
    }

    public ErankConfig config() {
        return config;
    }

    @Override
    public SearchResponse processResponse(SearchRequest request, SearchResponse response) {
        throw new UnsupportedOperationException("the erank processor only runs asynchronously (processResponseAsync)");
    }

    @Override
    public void processResponseAsync(
        SearchRequest request,
        SearchResponse response,
        PipelineProcessingContext context,
        ActionListener<SearchResponse> listener
    ) {
        ActionListener<SearchResponse> out = threadContext == null
            ? listener
            : new ContextPreservingActionListener<>(threadContext.newRestorableContext(false), listener);
        PageRequest page = PageRequest.load(context);
        SearchHit[] hits = response.getHits().getHits();
        int window = page == null ? config.window() : Math.min(config.window(), page.window());
        Call call = new Call(response, page, window, out);

        String skip = PageRequest.skipReason(request);
        if (skip == null && hits.length == 0) {
            skip = "no_hits";
        }
        if (skip != null) {
            call.finishUnranked(STATUS_SKIPPED, skip, null);
            return;
        }
        final String body;
        try {
            String query = QueryText.of(request);
            if (query == null) {
                throw new RerankException(
                    RerankException.NO_QUERY_TEXT,
                    "no query text: the query has no full-text clause and no ext.erank.query_text was given"
                );
            }
            int n = Math.min(window, hits.length);
            List<String> documents = new ArrayList<>(n);
            float[] firstStage = new float[n];
            boolean finiteScores = true;
            for (int i = 0; i < n; i++) {
                HitText text = HitText.of(hits[i], config.documentFields());
                call.texts[i] = text;
                documents.add(text.text());
                firstStage[i] = hits[i].getScore();
                finiteScores &= Float.isFinite(firstStage[i]);
            }
            call.reranked = n;
            body = RerankCodec.encodeRequest(query, documents, config.instruction(), finiteScores ? firstStage : null, config.alpha());
        } catch (Exception e) {
            call.fail(e);
            return;
        }
        call.start();
        try {
            transport.get().post(config.rerankUri(), body, config.timeout(), ActionListener.wrap(call::succeed, call::fail));
        } catch (Exception e) {
            call.fail(e);
        }
    }

    /** One rerank call: whichever of reply, error or deadline comes first answers the listener, once. */
    private final class Call {
        final SearchResponse response;
        final PageRequest page;
        final int window;
        final ActionListener<SearchResponse> out;
        final HitText[] texts;
        final AtomicBoolean done = new AtomicBoolean();
        final long startNanos = System.nanoTime();
        volatile Scheduler.ScheduledCancellable deadline;
        int reranked;

        Call(SearchResponse response, PageRequest page, int window, ActionListener<SearchResponse> out) {
            this.response = response;
            this.page = page;
            this.window = window;
            this.out = out;
            this.texts = new HitText[Math.min(window, response.getHits().getHits().length)];
        }

        void start() {
            if (scheduler == null) {
                return;
            }
            try {
                deadline = scheduler.apply(
                    config.timeout().toMillis(),
                    () -> fail(new RerankException(RerankException.TIMEOUT, "no reply from " + config.rerankUri() + " within " + config.timeout().toMillis() + "ms"))
                );
            } catch (RuntimeException e) {
                logger.debug("cannot schedule the erank deadline; relying on the HTTP client's timeout", e);
            }
        }

        void succeed(RerankTransport.Reply reply) {
            if (done.compareAndSet(false, true) == false) {
                return;
            }
            cancelDeadline();
            SearchResponse result;
            try {
                RerankResponse decoded = RerankCodec.decodeResponse(reply.status(), reply.body(), reranked);
                result = applyRanking(decoded);
            } catch (Exception e) {
                failed(e);
                return;
            }
            out.onResponse(result);
        }

        void fail(Exception e) {
            if (done.compareAndSet(false, true) == false) {
                return;
            }
            cancelDeadline();
            failed(e);
        }

        private void cancelDeadline() {
            Scheduler.ScheduledCancellable d = deadline;
            if (d != null) {
                d.cancel();
            }
        }

        private void failed(Exception e) {
            RerankException error = e instanceof RerankException
                ? (RerankException) e
                : new RerankException(RerankException.INTERNAL_ERROR, String.valueOf(e), e);
            if (config.failOpen() == false) {
                RestStatus status = RerankException.TIMEOUT.equals(error.type()) ? RestStatus.GATEWAY_TIMEOUT : RestStatus.BAD_GATEWAY;
                out.onFailure(new OpenSearchStatusException("erank rerank failed [" + error.type() + "]: " + error.getMessage(), status, error));
                return;
            }
            logFailOpen(error);
            Map<String, Object> errorInfo = new LinkedHashMap<>();
            errorInfo.put("type", error.type());
            errorInfo.put("reason", error.getMessage());
            finishUnranked(STATUS_FAILED, null, errorInfo);
        }

        /** The engine's own order, cut to the page, with the ext marker. */
        void finishUnranked(String status, String reason, Map<String, Object> error) {
            SearchResponse result;
            try {
                Map<String, Object> marker = new LinkedHashMap<>();
                marker.put("status", status);
                if (reason != null) {
                    marker.put("reason", reason);
                }
                if (error != null) {
                    marker.put("error", error);
                    marker.put("fail_open", true);
                }
                marker.put("window", window);
                if (STATUS_FAILED.equals(status)) {
                    marker.put("took_ms", tookMillis());
                }
                List<SearchHit> all = Arrays.asList(response.getHits().getHits());
                result = rebuild(response, cut(all), response.getHits().getMaxScore(), marker);
            } catch (Exception e) {
                out.onFailure(e);
                return;
            }
            out.onResponse(result);
        }

        private SearchResponse applyRanking(RerankResponse decoded) {
            SearchHit[] hits = response.getHits().getHits();
            int[] order = Reorder.order(hits.length, decoded.results());
            RerankResponse.Result[] byIndex = new RerankResponse.Result[reranked];
            for (RerankResponse.Result r : decoded.results()) {
                byIndex[r.index()] = r;
            }
            List<SearchHit> ordered = new ArrayList<>(hits.length);
            float maxScore = Float.NEGATIVE_INFINITY;
            int missingText = 0;
            for (int position = 0; position < order.length; position++) {
                int original = order[position];
                SearchHit hit = hits[original];
                if (original < reranked) {
                    RerankResponse.Result r = byIndex[original];
                    HitText text = texts[original];
                    float firstStage = hit.getScore();
                    Map<String, Object> info = new LinkedHashMap<>();
                    if (Float.isFinite(firstStage)) {
                        info.put("bm25_score", firstStage);
                    }
                    info.put("bm25_rank", original + 1);
                    info.put("relevance_score", r.relevanceScore());
                    putIfNotNull(info, "rank_score", r.rankScore());
                    putIfNotNull(info, "hybrid_score", r.hybridScore());
                    putIfNotNull(info, "answer", r.answer());
                    putIfNotNull(info, "answer_probability", r.answerProbability());
                    putIfNotNull(info, "status", r.status());
                    if (text != null && text.missing()) {
                        info.put("text_missing", true);
                        missingText++;
                    }
                    hit.score((float) r.relevanceScore());
                    hit.setDocumentField(HIT_FIELD, new DocumentField(HIT_FIELD, Collections.singletonList(info)));
                }
                if (Float.isFinite(hit.getScore())) {
                    maxScore = Math.max(maxScore, hit.getScore());
                }
                ordered.add(hit);
            }
            Map<String, Object> marker = new LinkedHashMap<>();
            marker.put("status", STATUS_RERANKED);
            putIfNotNull(marker, "model", decoded.model());
            putIfNotNull(marker, "fused", decoded.fused());
            marker.put("reranked", reranked);
            marker.put("window", window);
            if (missingText > 0) {
                marker.put("text_missing", missingText);
            }
            marker.put("took_ms", tookMillis());
            float max = maxScore == Float.NEGATIVE_INFINITY ? Float.NaN : maxScore;
            return rebuild(response, cut(ordered), max, marker);
        }

        private List<SearchHit> cut(List<SearchHit> hits) {
            return page == null ? hits : Reorder.page(hits, page.from(), page.size());
        }

        private long tookMillis() {
            return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos);
        }
    }

    /** At most one WARN per {@link #WARN_INTERVAL_NANOS} per processor, so an outage does not flood the log. */
    private void logFailOpen(RerankException error) {
        long now = System.nanoTime();
        long last = lastWarnNanos.get();
        if ((last == 0 || now - last >= WARN_INTERVAL_NANOS) && lastWarnNanos.compareAndSet(last, now == 0 ? 1 : now)) {
            logger.warn("erank: serving the first-stage order ({}): {}", error.type(), error.getMessage());
        } else {
            logger.debug("erank: serving the first-stage order ({}): {}", error.type(), error.getMessage());
        }
    }

    private static void putIfNotNull(Map<String, Object> map, String key, Object value) {
        if (value != null) {
            map.put(key, value);
        }
    }

    /** A copy of {@code old} with other hits, max score and the {@code ext.erank} marker; everything else kept. */
    static SearchResponse rebuild(SearchResponse old, List<SearchHit> hits, float maxScore, Map<String, Object> marker) {
        SearchHits oldHits = old.getHits();
        SearchHits newHits = new SearchHits(
            hits.toArray(new SearchHit[0]),
            oldHits.getTotalHits(),
            maxScore,
            oldHits.getSortFields(),
            oldHits.getCollapseField(),
            oldHits.getCollapseValues()
        );
        SearchResponseSections oldSections = old.getInternalResponse();
        List<SearchExtBuilder> exts = new ArrayList<>();
        if (oldSections != null && oldSections.getSearchExtBuilders() != null) {
            for (SearchExtBuilder ext : oldSections.getSearchExtBuilders()) {
                if (ErankSearchExtBuilder.NAME.equals(ext.getWriteableName()) == false) {
                    exts.add(ext);
                }
            }
        }
        exts.add(new ErankSearchExtBuilder(marker));
        SearchResponseSections sections = new SearchResponseSections(
            newHits,
            old.getAggregations(),
            old.getSuggest(),
            old.isTimedOut(),
            old.isTerminatedEarly(),
            // an empty profile section would render "profile": {"shards": []} on a search that never asked for one
            old.getProfileResults() == null || old.getProfileResults().isEmpty() ? null : new SearchProfileShardResults(old.getProfileResults()),
            old.getNumReducePhases(),
            exts,
            oldSections == null ? new ArrayList<>() : oldSections.getProcessorResult()
        );
        return new SearchResponse(
            sections,
            old.getScrollId(),
            old.getTotalShards(),
            old.getSuccessfulShards(),
            old.getSkippedShards(),
            old.getTook().millis(),
            old.getPhaseTook(),
            old.getShardFailures(),
            old.getClusters(),
            old.pointInTimeId()
        );
    }

    /** Builds processors from pipeline definitions; see {@link ErankConfig} for the keys. */
    static final class Factory implements Processor.Factory<SearchResponseProcessor> {
        private final Supplier<RerankTransport> transport;
        private final ThreadContext threadContext;
        private final BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler;

        Factory(
            Supplier<RerankTransport> transport,
            ThreadContext threadContext,
            BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler
        ) {
            this.transport = transport;
            this.threadContext = threadContext;
            this.scheduler = scheduler;
        }

        @Override
        public ErankRerankProcessor create(
            Map<String, Processor.Factory<SearchResponseProcessor>> processorFactories,
            String tag,
            String description,
            boolean ignoreFailure,
            Map<String, Object> config,
            Processor.PipelineContext pipelineContext
        ) {
            ErankConfig parsed = ErankConfig.parse(TYPE, tag, config);
            return new ErankRerankProcessor(tag, description, ignoreFailure, parsed, transport, threadContext, scheduler);
        }
    }
}
