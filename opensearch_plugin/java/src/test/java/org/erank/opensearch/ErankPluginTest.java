package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.plugins.SearchPipelinePlugin;
import org.opensearch.plugins.SearchPlugin;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

public class ErankPluginTest {

    private static SearchPipelinePlugin.Parameters parameters() {
        return new SearchPipelinePlugin.Parameters(null, null, null, null, null, null, null, null, null, null);
    }

    @Test
    public void registersBothProcessorsAndTheExt() throws Exception {
        ErankPlugin plugin = new ErankPlugin();
        assertEquals(Arrays.asList("erank_window"), Arrays.asList(plugin.getRequestProcessors(parameters()).keySet().toArray()));
        Map<String, Processor.Factory<SearchResponseProcessor>> response = plugin.getResponseProcessors(parameters());
        assertEquals(Arrays.asList("erank"), Arrays.asList(response.keySet().toArray()));
        List<SearchPlugin.SearchExtSpec<?>> exts = plugin.getSearchExts();
        assertEquals(1, exts.size());
        assertEquals("erank", exts.get(0).getName().getPreferredName());

        Map<String, Object> config = new HashMap<>();
        config.put("endpoint", "http://127.0.0.1:1");
        Map<String, Object> context = new HashMap<>();
        context.put("document_fields", Arrays.asList("body"));
        config.put("context", context);
        SearchResponseProcessor processor = response.get("erank").create(null, "tag1", "desc", true, config, null);
        assertTrue(processor instanceof ErankRerankProcessor);
        assertEquals("erank", processor.getType());
        assertEquals("tag1", processor.getTag());
        assertEquals("desc", processor.getDescription());
        assertTrue(processor.isIgnoreFailure());
    }
}
