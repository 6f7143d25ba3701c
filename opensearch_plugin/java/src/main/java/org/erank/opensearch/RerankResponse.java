package org.erank.opensearch;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A decoded, validated {@code 200} reply of {@code POST /v1/rerank}. */
public final class RerankResponse {

    /** A document answered after the model's full reasoning (also every score from the score cache). */
    public static final String COMPLETION_FULL = "full";
    /** The budget came first: the reasoning was closed early and the answer read from there. */
    public static final String COMPLETION_CUT = "cut";
    /** Not even a closed answer fitted in the budget. */
    public static final String COMPLETION_UNSCORED = "unscored";

    private final String model;
    private final Boolean fused;
    private final String fusion;
    private final List<Result> results;
    private final Completions completions;

    RerankResponse(String model, Boolean fused, String fusion, List<Result> results, Completions completions) {
        this.model = model;
        this.fused = fused;
        this.fusion = fusion;
        this.results = results;
        this.completions = completions;
    }

    /** {@code null} when the server did not say. */
    public String model() {
        return model;
    }

    /** {@code null} when the server did not say. */
    public Boolean fused() {
        return fused;
    }

    /** The fusion method the server used ({@code zscore}, {@code minmax}, {@code rrf}); {@code null} when not fused or not said. */
    public String fusion() {
        return fusion;
    }

    /** One per document, in the server's order (best first); every index appears exactly once. */
    public List<Result> results() {
        return results;
    }

    /** How many documents were answered in full, cut or not at all, and how many came from the score cache. */
    public Completions completions() {
        return completions;
    }

    /**
     * The REST front's {@code completions}: how many documents got a full, a cut or no answer ({@code full},
     * {@code cut}, {@code unscored}), how many came from the score cache ({@code cached}), the deadline the server
     * worked to ({@code deadline_ms}, 0: none) and how long before it the server began closing reasoning
     * ({@code closing_margin_ms}). From a REST front that does not send them: the results' own {@code completion}s
     * counted (a result without one is {@code full}), {@code cached} from the reply's {@code usage.cache_hits}, no
     * deadline.
     */
    public static final class Completions {
        private final int full;
        private final int cut;
        private final int unscored;
        private final int cached;
        private final int deadlineMillis;
        private final double closingMarginMillis;

        Completions(int full, int cut, int unscored, int cached, int deadlineMillis, double closingMarginMillis) {
            this.full = full;
            this.cut = cut;
            this.unscored = unscored;
            this.cached = cached;
            this.deadlineMillis = deadlineMillis;
            this.closingMarginMillis = closingMarginMillis;
        }

        /** The results' completions counted (one other than cut or unscored counts as full), {@code cached} as given. */
        static Completions count(List<Result> results, int cached) {
            int cut = 0;
            int unscored = 0;
            for (Result r : results) {
                if (COMPLETION_CUT.equals(r.completion())) {
                    cut++;
                } else if (COMPLETION_UNSCORED.equals(r.completion())) {
                    unscored++;
                }
            }
            return new Completions(results.size() - cut - unscored, cut, unscored, cached, 0, 0.0);
        }

        public int full() {
            return full;
        }

        public int cut() {
            return cut;
        }

        public int unscored() {
            return unscored;
        }

        public int cached() {
            return cached;
        }

        /** The deadline the server worked to, in ms from when it received the call; 0: none. */
        public int deadlineMillis() {
            return deadlineMillis;
        }

        public double closingMarginMillis() {
            return closingMarginMillis;
        }

        /** Whether the server worked up to its deadline: some document was cut or left unscored. */
        public boolean reachedDeadline() {
            return cut > 0 || unscored > 0;
        }

        /**
         * {@code {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}}, as the query proxy writes
         * its {@code ext.erank.completions}.
         */
        Map<String, Object> toMap() {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put(COMPLETION_FULL, full);
            map.put(COMPLETION_CUT, cut);
            map.put(COMPLETION_UNSCORED, unscored);
            map.put("cached", cached);
            map.put("deadline_ms", deadlineMillis);
            map.put("closing_margin_ms", closingMarginMillis);
            return map;
        }
    }

    /** One document's scores. Optional members are {@code null} when absent. */
    public static final class Result {
        private final int index;
        private final double relevanceScore;
        private final Double rankScore;
        private final Double hybridScore;
        private final Double firstStageScore;
        private final Integer answer;
        private final Double answerProbability;
        private final String status;
        private final String reasoning;
        private final Map<String, Object> passage;
        private final String completion;
        private final Integer thinkingTokens;

        Result(
            int index,
            double relevanceScore,
            Double rankScore,
            Double hybridScore,
            Double firstStageScore,
            Integer answer,
            Double answerProbability,
            String status,
            String reasoning,
            Map<String, Object> passage,
            String completion,
            Integer thinkingTokens
        ) {
            this.index = index;
            this.relevanceScore = relevanceScore;
            this.rankScore = rankScore;
            this.hybridScore = hybridScore;
            this.firstStageScore = firstStageScore;
            this.answer = answer;
            this.answerProbability = answerProbability;
            this.status = status;
            this.reasoning = reasoning;
            this.passage = passage;
            this.completion = completion;
            this.thinkingTokens = thinkingTokens;
        }

        public int index() {
            return index;
        }

        public double relevanceScore() {
            return relevanceScore;
        }

        public Double rankScore() {
            return rankScore;
        }

        public Double hybridScore() {
            return hybridScore;
        }

        public Double firstStageScore() {
            return firstStageScore;
        }

        public Integer answer() {
            return answer;
        }

        public Double answerProbability() {
            return answerProbability;
        }

        public String status() {
            return status;
        }

        /** The model's reasoning; {@code null} unless asked for ({@code return_reasoning}). */
        public String reasoning() {
            return reasoning;
        }

        /** Where the scored passage lies in the document; {@code null} unless {@code long_documents} is best_passage. */
        public Map<String, Object> passage() {
            return passage;
        }

        /** {@code full}, {@code cut} or {@code unscored} ({@code full} from a REST front that does not say). */
        public String completion() {
            return completion;
        }

        /** Tokens the model reasoned before its answer; {@code null} when the REST front did not say. */
        public Integer thinkingTokens() {
            return thinkingTokens;
        }
    }
}
