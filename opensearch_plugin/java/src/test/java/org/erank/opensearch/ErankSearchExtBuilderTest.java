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
    public void rejectsUnknownKeysAndNonStrings() throws Exception {
        for (String json : new String[] { "{\"query\":\"x\"}", "{\"query_text\":3}", "\"text\"" }) {
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
