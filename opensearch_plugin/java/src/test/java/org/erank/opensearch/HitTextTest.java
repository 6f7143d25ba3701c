package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.search.SearchHit;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

public class HitTextTest {

    private static final List<String> TITLE_BODY = Arrays.asList("title", "body");

    @Test
    public void joinsFieldsInConfiguredOrder() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"body\":\"the body\",\"title\":\"The Title\",\"other\":\"x\"}");
        HitText text = HitText.of(hit, TITLE_BODY);
        assertEquals("The Title\nthe body", text.text());
        assertFalse(text.missing());
        assertTrue(text.missingFields().isEmpty());
    }

    @Test
    public void dottedPathsWalkObjectsAndArrays() {
        SearchHit hit = Fixtures.hit(
            "1",
            1f,
            "{\"meta\":{\"title\":\"Nested\"},\"passages\":[{\"text\":\"p1\"},{\"text\":\"p2\"}],\"tags\":[\"a\",\"b\"],\"n\":3}"
        );
        assertEquals("Nested\np1\np2\na\nb\n3", HitText.of(hit, Arrays.asList("meta.title", "passages.text", "tags", "n")).text());
    }

    @Test
    public void dottedKeysInSourceAreMatchedToo() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"meta.title\":\"flat\",\"a\":{\"b.c\":\"mixed\"}}");
        assertEquals("flat\nmixed", HitText.of(hit, Arrays.asList("meta.title", "a.b.c")).text());
    }

    @Test
    public void objectValueContributesItsLeaves() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"meta\":{\"title\":\"T\",\"sub\":{\"x\":\"X\"}}}");
        // leaf order follows the parsed map, which is unspecified
        String text = HitText.of(hit, Collections.singletonList("meta")).text();
        assertTrue(text, text.equals("T\nX") || text.equals("X\nT"));
    }

    @Test
    public void fallsBackToHitFieldsWithoutSource() {
        Map<String, List<Object>> fields = new HashMap<>();
        fields.put("title", Collections.singletonList("stored title"));
        fields.put("body", Arrays.asList("line 1", "line 2"));
        SearchHit hit = Fixtures.hitWithFields("1", 1f, fields);
        assertFalse(hit.hasSource());
        HitText text = HitText.of(hit, TITLE_BODY);
        assertEquals("stored title\nline 1\nline 2", text.text());
        assertFalse(text.missing());
    }

    @Test
    public void fallsBackToHitFieldsPerFieldWhenSourceIsFiltered() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"title\":\"from source\"}");
        hit.setDocumentField("body", new org.opensearch.common.document.DocumentField("body", Collections.singletonList("from fields")));
        assertEquals("from source\nfrom fields", HitText.of(hit, TITLE_BODY).text());
    }

    @Test
    public void missingEverythingIsEmptyAndMarked() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"other\":\"x\"}");
        HitText text = HitText.of(hit, TITLE_BODY);
        assertEquals("", text.text());
        assertTrue(text.missing());
        assertEquals(TITLE_BODY, text.missingFields());

        SearchHit noSource = Fixtures.hit("2", 1f, null);
        assertTrue(HitText.of(noSource, TITLE_BODY).missing());
    }

    @Test
    public void partlyMissingIsNotMissing() {
        SearchHit hit = Fixtures.hit("1", 1f, "{\"title\":\"only title\",\"body\":null}");
        HitText text = HitText.of(hit, TITLE_BODY);
        assertEquals("only title", text.text());
        assertFalse(text.missing());
        assertEquals(Collections.singletonList("body"), text.missingFields());
    }
}
