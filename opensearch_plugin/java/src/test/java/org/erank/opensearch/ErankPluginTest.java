package org.erank.opensearch;

import org.junit.Test;
import org.opensearch.common.settings.SecureSettings;
import org.opensearch.common.settings.Settings;
import org.opensearch.core.common.settings.SecureString;
import org.opensearch.plugins.SearchPipelinePlugin;
import org.opensearch.plugins.SearchPlugin;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

public class ErankPluginTest {

    private static SearchPipelinePlugin.Parameters parameters() {
        return new SearchPipelinePlugin.Parameters(null, null, null, null, null, null, null, null, null, null);
    }

    @Test
    public void registersBothProcessorsAndTheExt() throws Exception {
        ErankPlugin plugin = new ErankPlugin(Settings.EMPTY);
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

    /** A keystore holding {@code erank.token} (the node's real one is the same interface). */
    private static Settings keystore(String token) {
        SecureSettings secure = new SecureSettings() {
            @Override
            public boolean isLoaded() {
                return true;
            }

            @Override
            public Set<String> getSettingNames() {
                return Collections.singleton("erank.token");
            }

            @Override
            public SecureString getString(String setting) {
                return new SecureString(token.toCharArray());
            }

            @Override
            public InputStream getFile(String setting) {
                return new ByteArrayInputStream(token.getBytes(StandardCharsets.UTF_8));
            }

            @Override
            public byte[] getSHA256Digest(String setting) {
                return new byte[32];
            }

            @Override
            public void close() {}
        };
        return Settings.builder().setSecureSettings(secure).build();
    }

    @Test
    public void tokenComesFromTheKeystoreAndReloads() throws Exception {
        ErankPlugin plugin = new ErankPlugin(keystore("first"));
        assertEquals("first", plugin.token());
        assertTrue(plugin.getSettings().contains(ErankPlugin.TOKEN));
        plugin.reload(keystore("second"));
        assertEquals("second", plugin.token());
        plugin.reload(Settings.EMPTY);
        assertEquals("no token in the keystore: none sent", "", plugin.token());
        assertEquals("", new ErankPlugin(Settings.EMPTY).token());
    }
}
