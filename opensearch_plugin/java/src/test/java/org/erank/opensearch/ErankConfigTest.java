package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.OpenSearchParseException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

public class ErankConfigTest {

    private static Map<String, Object> minimal() {
        Map<String, Object> config = new HashMap<>();
        config.put("endpoint", "http://127.0.0.1:8080");
        Map<String, Object> context = new HashMap<>();
        context.put("document_fields", new ArrayList<>(Arrays.asList("title", "body")));
        config.put("context", context);
        return config;
    }

    private static ErankConfig parse(Map<String, Object> config) {
        return ErankConfig.parse("erank", "t1", config);
    }

    private static String error(Map<String, Object> config) {
        try {
            parse(config);
        } catch (OpenSearchParseException e) {
            return e.getMessage();
        }
        fail("expected a configuration error");
        return null;
    }

    @Test
    public void minimalConfigGetsDefaults() {
        Map<String, Object> config = minimal();
        ErankConfig c = parse(config);
        assertTrue("all keys consumed", config.isEmpty());
        assertEquals("http://127.0.0.1:8080/v1/rerank", c.rerankUri().toString());
        assertEquals(Arrays.asList("title", "body"), c.documentFields());
        assertEquals(50, c.window());
        assertNull(c.instruction());
        assertNull(c.instructionPreset());
        assertNull(c.alpha());
        assertEquals(10_000, c.timeout().toMillis());
        assertTrue(c.failOpen());
        assertNull("the server's default fusion", c.options().fusion());
        assertNull(c.options().rankConstant());
        assertNull(c.options().longDocuments());
        assertNull(c.options().passageOverlap());
        assertFalse("no reasoning unless asked", c.options().reasoning());
        assertEquals("cut", c.options().onBudget());
        assertTrue(c.options().cuts());
        assertFalse(c.options().finishInBackground());
        assertEquals("no call has set a budget yet", 0, c.options().budgetMillis());
    }

    @Test
    public void budgetOptions() {
        Map<String, Object> config = minimal();
        config.put("on_budget", "cut");
        config.put("finish_in_background", true);
        RerankOptions o = parse(config).options();
        assertTrue("all keys consumed", config.isEmpty());
        assertTrue(o.cuts());
        assertTrue(o.finishInBackground());

        Map<String, Object> failOpen = minimal();
        failOpen.put("on_budget", "fail_open");
        RerankOptions f = parse(failOpen).options();
        assertEquals("fail_open", f.onBudget());
        assertFalse(f.cuts());
        assertEquals("fail_open sends no budget", 0, f.withBudget(900).budgetMillis());
        assertEquals(900, o.withBudget(900).budgetMillis());
    }

    @Test
    public void budgetOptionsAreValidated() {
        Object[][] bad = {
            { "on_budget", "drop", "must be one of [cut, fail_open], got [drop]" },
            { "on_budget", 3, "on_budget" },
            { "finish_in_background", "maybe", "finish_in_background" } };
        for (Object[] row : bad) {
            Map<String, Object> c = minimal();
            c.put((String) row[0], row[1]);
            String message = error(c);
            assertTrue(message, message.contains("[" + row[0] + "]") && message.contains((String) row[2]));
        }
        Map<String, Object> backgroundWithoutCut = minimal();
        backgroundWithoutCut.put("on_budget", "fail_open");
        backgroundWithoutCut.put("finish_in_background", true);
        String message = error(backgroundWithoutCut);
        assertTrue(message, message.startsWith("[finish_in_background] applies only to [on_budget] cut, got [fail_open]"));
    }

    @Test
    public void scoringOptions() {
        Map<String, Object> config = minimal();
        config.put("fusion", "rrf");
        config.put("rank_constant", 20);
        config.put("long_documents", "best_passage");
        config.put("passage_overlap", "32");
        config.put("explain_reasoning", true);
        RerankOptions o = parse(config).options();
        assertTrue("all keys consumed", config.isEmpty());
        assertEquals("rrf", o.fusion());
        assertEquals(Integer.valueOf(20), o.rankConstant());
        assertEquals("best_passage", o.longDocuments());
        assertEquals(Integer.valueOf(32), o.passageOverlap());
        assertTrue(o.reasoning());
        for (String fusion : new String[] { "zscore", "minmax" }) {
            Map<String, Object> c = minimal();
            c.put("fusion", fusion);
            assertEquals(fusion, parse(c).options().fusion());
        }
    }

    @Test
    public void scoringOptionsAreValidated() {
        Object[][] bad = {
            { "fusion", "borda", "must be one of [zscore, minmax, rrf], got [borda]" },
            { "rank_constant", 0, "must be an integer >= 1, got 0" },
            { "rank_constant", "k", "must be an integer" },
            { "long_documents", "chunks", "must be one of [truncate, best_passage], got [chunks]" },
            { "passage_overlap", -1, "must be an integer >= 0, got -1" },
            { "explain_reasoning", "maybe", "explain_reasoning" } };
        for (Object[] row : bad) {
            Map<String, Object> c = minimal();
            c.put((String) row[0], row[1]);
            String message = error(c);
            assertTrue(message, message.contains("[" + row[0] + "]") && message.contains((String) row[2]));
        }
        Map<String, Object> rankWithoutRrf = minimal();
        rankWithoutRrf.put("fusion", "zscore");
        rankWithoutRrf.put("rank_constant", 60);
        assertTrue(error(rankWithoutRrf).contains("applies only to [fusion] rrf"));
        Map<String, Object> overlapWhenTruncating = minimal();
        overlapWhenTruncating.put("long_documents", "truncate");
        overlapWhenTruncating.put("passage_overlap", 16);
        assertTrue(error(overlapWhenTruncating).contains("applies only to [long_documents] best_passage"));
    }

    @Test
    public void fullConfig() {
        Map<String, Object> config = minimal();
        config.put("endpoint", "https://scorer.internal:9443/erank/");
        config.put("window", 20);
        config.put("instruction", "Judge relevance.");
        config.put("alpha", 0.25);
        config.put("timeout", "1500ms");
        config.put("fail_open", false);
        ErankConfig c = parse(config);
        assertTrue(config.isEmpty());
        assertEquals("https://scorer.internal:9443/erank/v1/rerank", c.rerankUri().toString());
        assertEquals(20, c.window());
        assertEquals("Judge relevance.", c.instruction());
        assertEquals(0.25, c.alpha(), 0.0);
        assertEquals(1500, c.timeout().toMillis());
        assertFalse(c.failOpen());
    }

    @Test
    public void numbersAsStringsAndIntegerAlpha() {
        Map<String, Object> config = minimal();
        config.put("window", "7");
        config.put("alpha", 1);
        config.put("timeout", 250);
        ErankConfig c = parse(config);
        assertEquals(7, c.window());
        assertEquals(1.0, c.alpha(), 0.0);
        assertEquals(250, c.timeout().toMillis());
    }

    @Test
    public void unknownKeysAreLeftForOpenSearchToReport() {
        Map<String, Object> config = minimal();
        config.put("model_id", "x");
        parse(config);
        assertEquals(1, config.size());
        assertTrue(config.containsKey("model_id"));
    }

    @Test
    public void endpointIsRequiredAndValidated() {
        Map<String, Object> config = minimal();
        config.remove("endpoint");
        assertTrue(error(config), error(config).contains("[endpoint]"));

        for (String bad : new String[] { "ftp://host", "127.0.0.1:8080", "http://", "http://h:1/x?y=1", "http://u:p@h:1", "http://a b" }) {
            Map<String, Object> c = minimal();
            c.put("endpoint", bad);
            String message = error(c);
            assertTrue(bad + " -> " + message, message.startsWith("[endpoint]"));
        }
    }

    @Test
    public void contextIsRequiredAndValidated() {
        Map<String, Object> config = minimal();
        config.remove("context");
        assertTrue(error(config).contains("[context]"));

        config = minimal();
        config.put("context", "title");
        assertTrue(error(config).contains("[context]"));

        config = minimal();
        config.put("context", new HashMap<String, Object>());
        assertTrue(error(config).contains("[context.document_fields] required"));

        Object[] badFields = { "title", new ArrayList<>(), Arrays.asList("title", 3), Arrays.asList(" "), Arrays.asList("a..b"), Arrays.asList(".a") };
        for (Object bad : badFields) {
            Map<String, Object> c = minimal();
            Map<String, Object> context = new HashMap<>();
            context.put("document_fields", bad);
            c.put("context", context);
            String message = error(c);
            assertTrue(bad + " -> " + message, message.startsWith("[context.document_fields]"));
        }

        config = minimal();
        @SuppressWarnings("unchecked")
        Map<String, Object> context = (Map<String, Object>) config.get("context");
        context.put("query_text", "x");
        assertTrue(error(config).contains("[context] unsupported key(s) [query_text]"));
    }

    @Test
    public void dottedFieldPathsAreAccepted() {
        Map<String, Object> config = minimal();
        Map<String, Object> context = new HashMap<>();
        List<String> fields = Arrays.asList("meta.title", "passages.text");
        context.put("document_fields", fields);
        config.put("context", context);
        assertEquals(fields, parse(config).documentFields());
    }

    @Test
    public void windowRange() {
        for (Object bad : new Object[] { 0, -1, 10_001, "x", 2.5, "3.5" }) {
            Map<String, Object> c = minimal();
            c.put("window", bad);
            String message = error(c);
            assertTrue(bad + " -> " + message, message.startsWith("[window]"));
        }
        Map<String, Object> c = minimal();
        c.put("window", 10_000);
        assertEquals(10_000, parse(c).window());
    }

    @Test
    public void alphaRange() {
        for (Object bad : new Object[] { -0.01, 1.01, "abc", Double.NaN }) {
            Map<String, Object> c = minimal();
            c.put("alpha", bad);
            String message = error(c);
            assertTrue(bad + " -> " + message, message.startsWith("[alpha]"));
        }
    }

    @Test
    public void timeoutValidation() {
        for (Object bad : new Object[] { "5", "soon", "0s", "-1s", "6m", 0, true }) {
            Map<String, Object> c = minimal();
            c.put("timeout", bad);
            String message = error(c);
            assertTrue(bad + " -> " + message, message.startsWith("[timeout]"));
        }
        Map<String, Object> c = minimal();
        c.put("timeout", "2m");
        assertEquals(120_000, parse(c).timeout().toMillis());
    }

    @Test
    public void instructionMustNotBeBlank() {
        Map<String, Object> c = minimal();
        c.put("instruction", "  ");
        assertTrue(error(c).startsWith("[instruction]"));
    }

    @Test
    public void instructionPresetIsANonBlankNameForwardedAsIs() {
        Map<String, Object> c = minimal();
        c.put("instruction_preset", "web_search");
        ErankConfig parsed = parse(c);
        assertTrue(c.isEmpty());
        assertEquals("web_search", parsed.instructionPreset());
        assertNull(parsed.instruction());

        Map<String, Object> blank = minimal();
        blank.put("instruction_preset", " ");
        assertTrue(error(blank).startsWith("[instruction_preset] must not be empty"));
    }

    @Test
    public void instructionAndPresetExcludeEachOther() {
        Map<String, Object> c = minimal();
        c.put("instruction", "Judge relevance.");
        c.put("instruction_preset", "web_search");
        String message = error(c);
        assertTrue(message, message.startsWith("[instruction_preset] cannot be combined with [instruction]"));
    }

    @Test
    public void failOpenMustBeBoolean() {
        Map<String, Object> c = minimal();
        c.put("fail_open", "maybe");
        try {
            parse(c);
            fail();
        } catch (RuntimeException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("fail_open"));
        }
    }

    @Test
    public void errorsCarryProcessorTypeAndTag() {
        Map<String, Object> c = minimal();
        c.put("window", 0);
        try {
            parse(c);
            fail();
        } catch (OpenSearchParseException e) {
            assertEquals(Arrays.asList("erank"), e.getMetadata("opensearch.processor_type"));
            assertEquals(Arrays.asList("t1"), e.getMetadata("opensearch.processor_tag"));
            assertEquals(Arrays.asList("window"), e.getMetadata("opensearch.property_name"));
        }
    }
}
