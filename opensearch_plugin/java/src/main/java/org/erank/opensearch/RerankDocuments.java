package org.erank.opensearch;

import org.opensearch.search.SearchHit;

import java.util.ArrayList;
import java.util.List;

/**
 * What the scoring server reads about the top hits: each hit's text ({@link HitText}) and its first-stage
 * {@code _score}, in first-stage order. Built before any call, so a search whose hits have no text at all (a
 * misspelt field, {@code _source: false} without {@code fields}) can be told apart from one worth scoring.
 */
final class RerankDocuments {

    private final HitText[] texts;
    private final float[] firstStageScores;

    private RerankDocuments(HitText[] texts, float[] firstStageScores) {
        this.texts = texts;
        this.firstStageScores = firstStageScores;
    }

    /** The first {@code min(window, hits.length)} hits. */
    static RerankDocuments of(SearchHit[] hits, int window, List<String> fields) {
        int n = Math.min(window, hits.length);
        HitText[] texts = new HitText[n];
        float[] scores = new float[n];
        for (int i = 0; i < n; i++) {
            texts[i] = HitText.of(hits[i], fields);
            scores[i] = hits[i].getScore();
        }
        return new RerankDocuments(texts, scores);
    }

    int size() {
        return texts.length;
    }

    HitText text(int index) {
        return texts[index];
    }

    List<String> texts() {
        List<String> out = new ArrayList<>(texts.length);
        for (HitText text : texts) {
            out.add(text.text());
        }
        return out;
    }

    /**
     * The first-stage scores to fuse with, or {@code null} when any is not a finite number (the server fuses only
     * with a score for every document; OpenSearch gives NaN when scores were not tracked).
     */
    float[] firstStageScores() {
        for (float score : firstStageScores) {
            if (Float.isFinite(score) == false) {
                return null;
            }
        }
        return firstStageScores.clone();
    }

    /** How many hits had none of the configured fields (they are sent as the empty string). */
    int missingText() {
        int missing = 0;
        for (HitText text : texts) {
            if (text.missing()) {
                missing++;
            }
        }
        return missing;
    }

    /** False when no hit had any configured field: scoring would only rank empty strings. */
    boolean anyText() {
        return missingText() < texts.length;
    }
}
