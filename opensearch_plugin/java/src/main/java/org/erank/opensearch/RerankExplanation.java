package org.erank.opensearch;

import org.apache.lucene.search.Explanation;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The {@code _explanation} of a hit whose {@code _score} the {@code erank} processor changed, for searches with
 * {@code explain: true}. Its value is the new {@code _score}, so the explanation explains the number the reader
 * sees; its details say how that number was made, with the engine's own explanation of the first-stage score
 * kept whole inside.
 */
final class RerankExplanation {

    private RerankExplanation() {}

    /**
     * A reranked hit: the server's relevance score, from the first-stage score and the ERank score, and, when
     * {@code reasoning} is not {@code null}, why the model judged so (valued at the ERank score it led to).
     * {@code fusion} is the method the server said it fused with, {@code null} when it did not say.
     */
    static Explanation reranked(float score, Explanation firstStage, RerankResponse.Result result, String fusion, String reasoning) {
        boolean fused = result.hybridScore() != null;
        List<Explanation> details = new ArrayList<>(3);
        details.add(firstStage(firstStage));
        if (result.rankScore() != null) {
            String how = result.answer() != null && result.answerProbability() != null
                ? String.format(Locale.ROOT, " = answer %d × P(answer) %.4f", result.answer(), result.answerProbability())
                : "";
            details.add(Explanation.match(result.rankScore(), "ERank rank_score" + how + completion(result)));
        }
        if (reasoning != null) {
            double value = result.rankScore() != null ? result.rankScore() : result.relevanceScore();
            details.add(Explanation.match(value, "ERank reasoning: " + reasoning));
        }
        String description = fused
            ? "erank: fused score of the scoring server (" + (fusion == null ? "" : fusion + " ")
                + "fusion of the first-stage score and the ERank rank_score)"
            : "erank: ERank rank_score of the scoring server (not fused with the first-stage score)";
        return Explanation.match(score, description, details);
    }

    /** How the answer was reached, when not after the full reasoning: {@code ""} for a full one. */
    private static String completion(RerankResponse.Result result) {
        if (RerankResponse.COMPLETION_CUT.equals(result.completion())) {
            String after = result.thinkingTokens() == null ? "" : " after " + result.thinkingTokens() + " thinking tokens";
            return ", reasoning cut at the call's budget" + after;
        }
        if (RerankResponse.COMPLETION_UNSCORED.equals(result.completion())) {
            return ", not scored within the call's budget";
        }
        return "";
    }

    /** A hit below the reranked window: placed under every reranked hit by {@link Reorder#belowWindowScore}. */
    static Explanation belowWindow(float score, Explanation firstStage, float lowestReranked, int distance) {
        return Explanation.match(
            score,
            String.format(
                Locale.ROOT,
                "erank: below the reranked window, lowest reranked score %s - 1 - %d (its distance below the window);"
                    + " first-stage order kept",
                lowestReranked,
                distance
            ),
            firstStage(firstStage)
        );
    }

    private static Explanation firstStage(Explanation engine) {
        return Explanation.match(engine.getValue(), "first-stage score (the engine's own)", engine);
    }
}
