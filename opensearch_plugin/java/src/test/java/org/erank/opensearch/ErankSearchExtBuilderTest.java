package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.common.io.stream.BytesStreamOutput;
import org.opensearch.common.xcontent.json.JsonXContent;
import org.opensearch.core.common.ParsingException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.xcontent.DeprecationHandler;
import org.opensearch.core.xcontent.NamedXContentRegistry;
import org.opensearch.core.xcontent.XContentParser;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

public class ErankSearchExtBuilderTest {

    private static ErankSearchExtBuilder parse(String json) throws Exception {
        try (
            XContentParser parser = JsonXContent.jsonXContent.createParser(
                NamedXContentRegistry.EMPTY,
                DeprecationHandler.THROW_UNSUPPORTED_OPERATION,
                json
            )
        ) {
            parser.nextToken();
            return ErankSearchExtBuilder.parse(parser);
        }
    }

    @Test
    public void parsesTheRequestForm() throws Exception {
        ErankSearchExtBuilder ext = parse("{\"query_text\":\"why is the sky blue\"}");
        assertEquals("why is the sky blue", ext.queryText());
        assertEquals("erank", ext.getWriteableName());
    }

    @Test
    public void parsesTheScoringOverrides() throws Exception {
        ErankSearchExtBuilder ext = parse(
            "{\"fusion\":\"rrf\",\"rank_constant\":20,\"long_documents\":\"best_passage\",\"passage_overlap\":0,\"explain\":true}"
        );
        assertNull(ext.queryText());
        assertEquals("rrf", ext.fusion());
        assertEquals(Integer.valueOf(20), ext.rankConstant());
        assertEquals("best_passage", ext.longDocuments());
        assertEquals(Integer.valueOf(0), ext.passageOverlap());
        assertTrue(ext.explain());
        assertFalse(parse("{}").explain());
    }

    @Test
    public void parsesTheBudgetOverrides() throws Exception {
        ErankSearchExtBuilder ext = parse("{\"on_budget\":\"fail_open\",\"finish_in_background\":false}");
        assertEquals("fail_open", ext.onBudget());
        assertEquals(Boolean.FALSE, ext.finishInBackground());
        assertNull(parse("{}").onBudget());
        assertNull(parse("{}").finishInBackground());
        try {
            parse("{\"on_budget\":\"wait\"}");
            fail();
        } catch (ParsingException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("[ext.erank.on_budget] must be one of [cut, fail_open], got [wait]"));
        }
    }

    @Test
    public void rejectsUnknownKeysAndBadValues() throws Exception {
        String[] bad = {
            "{\"query\":\"x\"}",
            "{\"query_text\":3}",
            "\"text\"",
            "{\"fusion\":\"borda\"}",
            "{\"fusion\":1}",
            "{\"rank_constant\":0}",
            "{\"rank_constant\":\"60\"}",
            "{\"long_documents\":\"chunk\"}",
            "{\"passage_overlap\":-1}",
            "{\"explain\":\"yes\"}",
            "{\"on_budget\":\"wait\"}",
            "{\"on_budget\":true}",
            "{\"finish_in_background\":\"yes\"}" };
        for (String json : bad) {
            try {
                parse(json);
                fail(json);
            } catch (ParsingException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("ext.erank"));
            }
        }
    }

    @Test
    public void streamsAndRenders() throws Exception {
        Map<String, Object> values = new LinkedHashMap<>();
        values.put("status", "failed");
        Map<String, Object> error = new LinkedHashMap<>();
        error.put("type", "timeout");
        error.put("reason", "slow");
        values.put("error", error);
        values.put("window", 50);
        ErankSearchExtBuilder ext = new ErankSearchExtBuilder(values);

        BytesStreamOutput out = new BytesStreamOutput();
        ext.writeTo(out);
        StreamInput in = out.bytes().streamInput();
        ErankSearchExtBuilder copy = new ErankSearchExtBuilder(in);
        assertEquals(ext, copy);
        assertEquals(ext.hashCode(), copy.hashCode());

        String json = Fixtures.toJson(ext, false);
        assertEquals("{\"erank\":{\"status\":\"failed\",\"error\":{\"type\":\"timeout\",\"reason\":\"slow\"},\"window\":50}}", json);
    }
}
