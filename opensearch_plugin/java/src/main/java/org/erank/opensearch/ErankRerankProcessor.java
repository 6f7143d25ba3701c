package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.common.util.concurrent.ThreadContext;
import org.opensearch.core.action.ActionListener;
import org.opensearch.search.SearchHit;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;
import org.opensearch.threadpool.Scheduler;

import java.util.Map;
import java.util.function.BiFunction;
import java.util.function.Supplier;

/**
 * Response processor {@code erank}: sends the query and the text of the top {@code window} hits (with their
 * first-stage {@code _score}s) to the scoring server's {@code POST /v1/rerank}, reorders those hits by the returned
 * {@code relevance_score} (the server's fusion of the ERank score with the first-stage score), keeps the hits past
 * the window below them in their original order, and, when {@code erank_window} ran, cuts the user's page.
 *
 * <p>This class decides whether there is anything to score; the parts live apart, as in neural-search's
 * {@code processor/rerank/} package: {@link AsyncResponseProcessor} (the async-only base),
 * {@link RerankDocuments} (what is sent), {@link RerankCall} (the call: once-only answer, deadline),
 * {@link FailOpen} (what a failure does) and {@link ResponseRewriter} (the response for each outcome, with
 * {@link ErankMarker} as its {@code ext.erank}).
 *
 * <p>With {@code on_budget: cut} (the default) each call carries {@code budget_ms}: the {@code timeout} less what
 * this processor measured it spends around the REST front's work ({@link Overhead}), so the REST front answers in
 * time with every document scored, the slow ones with their reasoning cut; the call's own timeout stays the whole
 * {@code timeout}, and the search fails open only when no usable reply arrives by then.
 *
 * <p>Nothing to score is not a failure: scrolls, {@code search_after}, field sorts, rescores, {@code size: 0}, no
 * hits, a page wholly past the window, no query text (a kNN-only search without {@code ext.erank.query_text}) and
 * no hit text are {@code skipped} with a reason, and the scoring server is not called.
 *
 * <p>Whatever ran before decides the first-stage scores: for a {@code hybrid} query they are the engine's final
 * {@code _score}s, after neural-search's normalization processor (a phase-results processor, which runs before any
 * response processor).
 */
public final class ErankRerankProcessor extends AsyncResponseProcessor {

    public static final String TYPE = "erank";
    /** Name of the per-hit entry in the hit's {@code fields}. */
    public static final String HIT_FIELD = ResponseRewriter.HIT_FIELD;

    private final ErankConfig config;
    private final Supplier<RerankTransport> transport;
    private final BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler;
    private final FailOpen failOpen;
    private final Overhead overhead;

    ErankRerankProcessor(
        String tag,
        String description,
        boolean ignoreFailure,
        ErankConfig config,
        Supplier<RerankTransport> transport,
        ThreadContext threadContext,
        BiFunction<Long, Runnable, Scheduler.ScheduledCancellable> scheduler
    ) {
        super(tag, description, ignoreFailure, threadContext);
        this.config = config;
        this.transport = transport;
        this.scheduler = scheduler;
        this.failOpen = new FailOpen(config.failOpen());
        this.overhead = new Overhead(config.timeout());
    }

    @Override
    public String getType() {
        return TYPE;
    }

    public ErankConfig config() {
        return config;
    }

    @Override
    void process(SearchRequest request, SearchResponse response, PipelineProcessingContext context, ActionListener<SearchResponse> listener) {
        long startNanos = System.nanoTime();
        PageRequest page = PageRequest.load(context);
        int window = page == null ? config.window() : Math.min(config.window(), page.window());
        ResponseRewriter rewriter = new ResponseRewriter(response, page, window, startNanos);
        SearchHit[] hits = response.getHits().getHits();

        String skip = PageRequest.skipReason(request);
        if (skip == null && page != null && page.pastWindow(window)) {
            skip = ErankMarker.SKIP_PAST_WINDOW; // before no_hits: a page past the end of the hits is past the window too
        }
        if (skip == null && hits.length == 0) {
            skip = ErankMarker.SKIP_NO_HITS;
        }
        if (skip != null) {
            listener.onResponse(rewriter.skipped(ErankMarker.skipped(skip)));
            return;
        }
        String query;
        try {
            query = QueryText.of(request);
        } catch (RuntimeException e) {
            failOpen.answer(e, rewriter, listener);
            return;
        }
        if (query == null) {
            listener.onResponse(rewriter.skipped(ErankMarker.skipped(ErankMarker.SKIP_NO_QUERY_TEXT)));
            return;
        }
        RerankDocuments documents = RerankDocuments.of(hits, window, config.documentFields());
        if (documents.anyText() == false) {
            listener.onResponse(rewriter.skipped(ErankMarker.noText(config.documentFields())));
            return;
        }
        Boolean explain = request.source() == null ? null : request.source().explain();
        RerankOptions options = RerankOptions.forSearch(config.options(), ErankSearchExtBuilder.of(request), Boolean.TRUE.equals(explain))
            .withBudget(overhead.budgetMillis());
        String body;
        RerankTransport client;
        try {
            body = RerankCodec.encodeRequest(
                query,
                documents.texts(),
                config.instruction(),
                config.instructionPreset(),
                documents.firstStageScores(),
                config.alpha(),
                options
            );
            client = transport.get();
        } catch (RuntimeException e) {
            failOpen.answer(e, rewriter, listener);
            return;
        }
        // not ActionListener.wrap: an exception thrown by the pipeline's listener must not answer it a second time
        RerankCall.start(client, scheduler, config.rerankUri(), config.timeout(), body, documents.size(), new ActionListener<RerankCall.Answer>() {
            @Override
            public void onResponse(RerankCall.Answer reply) {
                answer(reply, documents, options, rewriter, listener);
            }

            @Override
            public void onFailure(Exception e) {
                if (e instanceof RerankException && RerankException.TIMEOUT.equals(((RerankException) e).type())) {
                    overhead.timedOut(options.budgetMillis());
                }
                failOpen.answer(e, rewriter, listener);
            }
        });
    }

    /**
     * The reranked response; a reply that cannot be applied fails open like any other failure. The reply's timing and
     * the time the rewrite took go into the {@link Overhead} estimate.
     */
    private void answer(
        RerankCall.Answer reply,
        RerankDocuments documents,
        RerankOptions options,
        ResponseRewriter rewriter,
        ActionListener<SearchResponse> listener
    ) {
        RerankResponse response = reply.response();
        overhead.replied(reply.roundTripNanos(), options.budgetMillis(), response.completions().reachedDeadline());
        SearchResponse reranked;
        try {
            reranked = rewriter.reranked(response, documents, options);
        } catch (RuntimeException e) {
            failOpen.answer(e, rewriter, listener);
            return;
        }
        overhead.rewrote(System.nanoTime() - reply.arrivedNanos());
        listener.onResponse(reranked);
    }

    /** The estimate the next call's {@code budget_ms} is made from. */
    Overhead overhead() {
        return overhead;
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
