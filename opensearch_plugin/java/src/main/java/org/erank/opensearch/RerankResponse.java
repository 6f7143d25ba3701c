package org.erank.opensearch;

import java.util.List;
import java.util.Map;

/** A decoded, validated {@code 200} reply of {@code POST /v1/rerank}. */
public final class RerankResponse {

    private final String model;
    private final Boolean fused;
    private final String fusion;
    private final List<Result> results;

    RerankResponse(String model, Boolean fused, String fusion, List<Result> results) {
        this.model = model;
        this.fused = fused;
        this.fusion = fusion;
        this.results = results;
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
            Map<String, Object> passage
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
    }
}
