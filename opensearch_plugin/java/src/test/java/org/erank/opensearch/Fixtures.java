package org.erank.opensearch;

import org.apache.lucene.search.TotalHits;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.search.SearchResponseSections;
import org.opensearch.action.search.ShardSearchFailure;
import org.opensearch.common.document.DocumentField;
import org.opensearch.common.xcontent.XContentFactory;
import org.opensearch.core.common.bytes.BytesArray;
import org.opensearch.core.xcontent.ToXContent;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchHits;
import org.opensearch.search.builder.SearchSourceBuilder;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Small builders for hits, responses and requests (no OpenSearch test framework needed). */
final class Fixtures {

    private Fixtures() {}

    /** A hit with {@code _source} {"title": "title <id>", "body": "body <id>"} and the given score. */
    static SearchHit hit(String id, float score) {
        return hit(id, score, "{\"title\":\"title " + id + "\",\"body\":\"body " + id + "\"}");
    }

    static SearchHit hit(String id, float score, String sourceJson) {
        SearchHit hit = new SearchHit(Integer.parseInt(id.replaceAll("\\D", "0")), id, new HashMap<>(), new HashMap<>());
        hit.score(score);
        if (sourceJson != null) {
            hit.sourceRef(new BytesArray(sourceJson));
        }
        return hit;
    }

    static SearchHit hitWithFields(String id, float score, Map<String, List<Object>> fields) {
        Map<String, DocumentField> documentFields = new HashMap<>();
        for (Map.Entry<String, List<Object>> e : fields.entrySet()) {
            documentFields.put(e.getKey(), new DocumentField(e.getKey(), e.getValue()));
        }
        SearchHit hit = new SearchHit(1, id, documentFields, new HashMap<>());
        hit.score(score);
        return hit;
    }

    /** {@code n} hits "d0".."d(n-1)" with descending BM25 scores n, n-1, ..., 1. */
    static SearchHit[] hits(int n) {
        SearchHit[] hits = new SearchHit[n];
        for (int i = 0; i < n; i++) {
            hits[i] = hit("d" + i, n - i);
        }
        return hits;
    }

    static SearchResponse response(SearchHit... hits) {
        float max = Float.NaN;
        for (SearchHit h : hits) {
            max = Float.isNaN(max) ? h.getScore() : Math.max(max, h.getScore());
        }
        SearchHits searchHits = new SearchHits(hits, new TotalHits(hits.length, TotalHits.Relation.EQUAL_TO), max);
        SearchResponseSections sections = new SearchResponseSections(
            searchHits,
            null,
            null,
            false,
            null,
            null,
            1,
            new ArrayList<>(),
            new ArrayList<>()
        );
        return new SearchResponse(sections, null, 1, 1, 0, 7, ShardSearchFailure.EMPTY_ARRAY, SearchResponse.Clusters.EMPTY);
    }

    static SearchRequest request(SearchSourceBuilder source) {
        SearchRequest request = new SearchRequest("docs");
        request.source(source);
        return request;
    }

    static List<String> ids(SearchResponse response) {
        List<String> ids = new ArrayList<>();
        for (SearchHit hit : response.getHits().getHits()) {
            ids.add(hit.getId());
        }
        return ids;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> erankInfo(SearchHit hit) {
        DocumentField field = hit.field(ErankRerankProcessor.HIT_FIELD);
        return field == null ? null : (Map<String, Object>) field.getValue();
    }

    static String toJson(ToXContent object, boolean isObject) throws IOException {
        XContentBuilder builder = XContentFactory.jsonBuilder();
        if (isObject == false) {
            builder.startObject();
        }
        object.toXContent(builder, ToXContent.EMPTY_PARAMS);
        if (isObject == false) {
            builder.endObject();
        }
        return builder.toString();
    }

    static Map<String, Object> parse(String json) throws IOException {
        return RerankCodec.parseObject(json);
    }
}
