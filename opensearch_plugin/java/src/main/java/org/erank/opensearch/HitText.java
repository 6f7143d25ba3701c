package org.erank.opensearch;

import org.opensearch.common.document.DocumentField;
import org.opensearch.search.SearchHit;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * The text the reranker reads for one hit: the configured fields, in order, joined with {@code "\n"}.
 *
 * <p>A field is looked up in {@code _source} first (a dotted path walks objects, and also matches keys that
 * themselves hold dots), then in the hit's {@code fields} section (stored fields, docvalue fields, the
 * {@code fields} option), so a search with {@code _source} disabled or filtered still has text. A list value
 * contributes each element (one per line); an object contributes its leaf values. A field that is found nowhere
 * is skipped; a hit with none of its fields is sent as the empty string and reported {@link #missing()}.
 */
public final class HitText {

    static final String SEPARATOR = "\n";

    private final String text;
    private final boolean missing;
    private final List<String> missingFields;

    HitText(String text, boolean missing, List<String> missingFields) {
        this.text = text;
        this.missing = missing;
        this.missingFields = missingFields;
    }

    public static HitText of(SearchHit hit, List<String> fields) {
        Map<String, Object> source = null;
        if (hit.hasSource()) {
            try {
                source = hit.getSourceAsMap();
            } catch (RuntimeException e) {
                source = null; // unparseable source: fall back to fields
            }
        }
        return of(source, hit.getFields(), fields);
    }

    /** The pure part, for tests: {@code source} may be {@code null}, {@code hitFields} may be empty. */
    static HitText of(Map<String, Object> source, Map<String, DocumentField> hitFields, List<String> fields) {
        List<String> parts = new ArrayList<>();
        List<String> missingFields = new ArrayList<>();
        for (String field : fields) {
            List<String> values = new ArrayList<>();
            if (source != null) {
                collectPath(source, field, values);
            }
            if (values.isEmpty() && hitFields != null) {
                DocumentField documentField = hitFields.get(field);
                if (documentField != null) {
                    for (Object value : documentField.getValues()) {
                        collectValue(value, values);
                    }
                }
            }
            if (values.isEmpty()) {
                missingFields.add(field);
            } else {
                parts.addAll(values);
            }
        }
        String text = String.join(SEPARATOR, parts);
        return new HitText(text, parts.isEmpty(), missingFields);
    }

    /**
     * Collects the values at a dotted path. At each object level the longest key that is a prefix of the
     * remaining path is tried first, so both {@code {"a": {"b": 1}}} and {@code {"a.b": 1}} answer {@code a.b}.
     */
    static void collectPath(Object node, String path, List<String> out) {
        if (node instanceof Map) {
            Map<?, ?> map = (Map<?, ?>) node;
            if (map.containsKey(path)) {
                collectValue(map.get(path), out);
                return;
            }
            int dot = path.lastIndexOf('.');
            while (dot > 0) {
                String head = path.substring(0, dot);
                Object child = map.get(head);
                if (child != null) {
                    int before = out.size();
                    collectPath(child, path.substring(dot + 1), out);
                    if (out.size() > before) {
                        return;
                    }
                }
                dot = path.lastIndexOf('.', dot - 1);
            }
        } else if (node instanceof Collection) {
            for (Object element : (Collection<?>) node) {
                collectPath(element, path, out);
            }
        }
    }

    static void collectValue(Object value, List<String> out) {
        if (value == null) {
            return;
        }
        if (value instanceof Collection) {
            for (Object element : (Collection<?>) value) {
                collectValue(element, out);
            }
        } else if (value instanceof Map) {
            for (Object element : ((Map<?, ?>) value).values()) {
                collectValue(element, out);
            }
        } else {
            String s = String.valueOf(value);
            if (s.isEmpty() == false) {
                out.add(s);
            }
        }
    }

    public String text() {
        return text;
    }

    /** True when none of the configured fields had a value: the hit is scored on the empty string. */
    public boolean missing() {
        return missing;
    }

    /** Configured fields that had no value on this hit. */
    public List<String> missingFields() {
        return missingFields;
    }
}
