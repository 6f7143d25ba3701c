package org.erank.opensearch;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * How the scoring server should score one search: the fusion method ({@code fusion}, {@code rank_constant}), what
 * it does with documents longer than its context ({@code long_documents}, {@code passage_overlap}), whether it
 * returns its reasoning ({@code return_reasoning}), and what it does when the call's time runs out
 * ({@code on_budget}, {@code finish_in_background}; the call's {@code budget_ms} is set per call by the processor,
 * {@link #withBudget}). Each is sent only when set, so the REST front's own defaults apply otherwise.
 *
 * <p>{@code on_budget}: {@code cut} (the default) sends {@code budget_ms}, what is left of the processor's
 * {@code timeout} after its own measured overhead ({@link Overhead}), and the REST front answers by then with every
 * document scored, some of them with their reasoning cut short; {@code fail_open} is the behaviour before budgets
 * existed: no budget is sent, and a call that runs past the timeout fails open.
 *
 * <p>The processor's options are the defaults; a search overrides them through {@code ext.erank}
 * ({@link ErankSearchExtBuilder}). Reasoning is asked for only when someone will read it: the search has
 * {@code explain: true}, or the processor option {@code explain_reasoning} or the search's {@code ext.erank.explain}
 * is true. The validators are shared by the processor's configuration and the search extension, so both reject the
 * same values with the same words.
 */
final class RerankOptions {

    static final String FUSION = "fusion";
    static final String RANK_CONSTANT = "rank_constant";
    static final String LONG_DOCUMENTS = "long_documents";
    static final String PASSAGE_OVERLAP = "passage_overlap";
    static final String ON_BUDGET = "on_budget";
    static final String FINISH_IN_BACKGROUND = "finish_in_background";

    static final String FUSION_RRF = "rrf";
    static final List<String> FUSIONS = Collections.unmodifiableList(Arrays.asList("zscore", "minmax", FUSION_RRF));
    static final String BEST_PASSAGE = "best_passage";
    static final List<String> LONG_DOCUMENT_MODES = Collections.unmodifiableList(Arrays.asList("truncate", BEST_PASSAGE));
    static final String ON_BUDGET_CUT = "cut";
    static final String ON_BUDGET_FAIL_OPEN = "fail_open";
    static final List<String> ON_BUDGET_MODES = Collections.unmodifiableList(Arrays.asList(ON_BUDGET_CUT, ON_BUDGET_FAIL_OPEN));

    private final String fusion;
    private final Integer rankConstant;
    private final String longDocuments;
    private final Integer passageOverlap;
    private final boolean reasoning;
    private final String onBudget;
    private final boolean finishInBackground;
    /** 0: none (not yet set for a call, or {@code on_budget: fail_open}). */
    private final long budgetMillis;

    /** Scoring options with the default budget behaviour ({@code on_budget: cut}, nothing finished in the background). */
    RerankOptions(String fusion, Integer rankConstant, String longDocuments, Integer passageOverlap, boolean reasoning) {
        this(fusion, rankConstant, longDocuments, passageOverlap, reasoning, ON_BUDGET_CUT, false);
    }

    RerankOptions(
        String fusion,
        Integer rankConstant,
        String longDocuments,
        Integer passageOverlap,
        boolean reasoning,
        String onBudget,
        boolean finishInBackground
    ) {
        this(fusion, rankConstant, longDocuments, passageOverlap, reasoning, onBudget, finishInBackground, 0);
    }

    private RerankOptions(
        String fusion,
        Integer rankConstant,
        String longDocuments,
        Integer passageOverlap,
        boolean reasoning,
        String onBudget,
        boolean finishInBackground,
        long budgetMillis
    ) {
        this.fusion = fusion;
        this.rankConstant = rankConstant;
        this.longDocuments = longDocuments;
        this.passageOverlap = passageOverlap;
        this.reasoning = reasoning;
        this.onBudget = onBudget;
        this.finishInBackground = finishInBackground;
        this.budgetMillis = budgetMillis;
    }

    /**
     * The options of one search: the search's {@code ext.erank} values over the processor's, and reasoning when the
     * search explains or either side asks for it.
     */
    static RerankOptions forSearch(RerankOptions processor, ErankSearchExtBuilder ext, boolean searchExplains) {
        if (ext == null) {
            return searchExplains ? processor.withReasoning() : processor;
        }
        return new RerankOptions(
            ext.fusion() != null ? ext.fusion() : processor.fusion,
            ext.rankConstant() != null ? ext.rankConstant() : processor.rankConstant,
            ext.longDocuments() != null ? ext.longDocuments() : processor.longDocuments,
            ext.passageOverlap() != null ? ext.passageOverlap() : processor.passageOverlap,
            processor.reasoning || searchExplains || ext.explain(),
            ext.onBudget() != null ? ext.onBudget() : processor.onBudget,
            ext.finishInBackground() != null ? ext.finishInBackground() : processor.finishInBackground
        );
    }

    private RerankOptions withReasoning() {
        return new RerankOptions(fusion, rankConstant, longDocuments, passageOverlap, true, onBudget, finishInBackground);
    }

    /**
     * These options for one call whose REST front may spend {@code millis} (at least 1). Ignored with
     * {@code on_budget: fail_open}, which sends no budget.
     */
    RerankOptions withBudget(long millis) {
        if (cuts() == false) {
            return this;
        }
        return new RerankOptions(
            fusion,
            rankConstant,
            longDocuments,
            passageOverlap,
            reasoning,
            onBudget,
            finishInBackground,
            Math.max(1, millis)
        );
    }

    /** {@code null} when {@code value} is a fusion method, else why not. */
    static String checkFusion(String value) {
        return oneOf(value, FUSIONS);
    }

    /** {@code null} when {@code value} is a long-document mode, else why not. */
    static String checkLongDocuments(String value) {
        return oneOf(value, LONG_DOCUMENT_MODES);
    }

    /** {@code null} when {@code value} is a valid RRF constant (k of 1 / (k + rank)), else why not. */
    static String checkRankConstant(long value) {
        return value >= 1 && value <= Integer.MAX_VALUE ? null : "must be an integer >= 1, got " + value;
    }

    /** {@code null} when {@code value} is a valid passage overlap in tokens, else why not. */
    static String checkPassageOverlap(long value) {
        return value >= 0 && value <= Integer.MAX_VALUE ? null : "must be an integer >= 0, got " + value;
    }

    /** {@code null} when {@code value} is an {@code on_budget} mode, else why not. */
    static String checkOnBudget(String value) {
        return oneOf(value, ON_BUDGET_MODES);
    }

    private static String oneOf(String value, List<String> allowed) {
        return allowed.contains(value) ? null : String.format(Locale.ROOT, "must be one of %s, got [%s]", allowed, value);
    }

    /** {@code null} when not set: the server's default method. */
    String fusion() {
        return fusion;
    }

    Integer rankConstant() {
        return rankConstant;
    }

    String longDocuments() {
        return longDocuments;
    }

    Integer passageOverlap() {
        return passageOverlap;
    }

    /** Whether the server is asked for each document's reasoning (and the hits get it). */
    boolean reasoning() {
        return reasoning;
    }

    /** {@code cut} or {@code fail_open}. */
    String onBudget() {
        return onBudget;
    }

    /** Whether the call's REST front is given a budget and cuts the reasoning that would run past it. */
    boolean cuts() {
        return ON_BUDGET_CUT.equals(onBudget);
    }

    /** Whether cut documents go on to their full scores in the server's background (into its score cache). */
    boolean finishInBackground() {
        return finishInBackground;
    }

    /** The call's {@code budget_ms}; 0 when none is sent. */
    long budgetMillis() {
        return budgetMillis;
    }
}
