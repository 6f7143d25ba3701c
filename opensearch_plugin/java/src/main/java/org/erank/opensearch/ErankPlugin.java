package org.erank.opensearch;

import org.opensearch.common.settings.SecureSetting;
import org.opensearch.common.settings.Setting;
import org.opensearch.common.settings.Settings;
import org.opensearch.core.common.settings.SecureString;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.ReloadablePlugin;
import org.opensearch.plugins.SearchPipelinePlugin;
import org.opensearch.plugins.SearchPlugin;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchRequestProcessor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;

/**
 * ERank reranking for OpenSearch search pipelines.
 *
 * <ul>
 *   <li>response processor {@code erank} ({@link ErankRerankProcessor});</li>
 *   <li>request processor {@code erank_window} ({@link ErankWindowProcessor}), for correct paging;</li>
 *   <li>the {@code ext.erank} search extension ({@link ErankSearchExtBuilder}): the query text in requests,
 *       the outcome marker in responses.</li>
 * </ul>
 *
 * <p>The REST front's bearer token is the secure setting {@code erank.token} of the OpenSearch keystore
 * ({@code bin/opensearch-keystore add erank.token}), never a pipeline option: pipeline JSON is readable by anyone
 * who may read pipelines. It is read at node start and again on {@code POST _nodes/reload_secure_settings}, and sent
 * as {@code Authorization: Bearer <token>} on every call.</p>
 */
public class ErankPlugin extends Plugin implements SearchPipelinePlugin, SearchPlugin, ReloadablePlugin {

    /** The REST front's bearer token, from the keystore; unset: no {@code Authorization} header. */
    static final Setting<SecureString> TOKEN = SecureSetting.secureString("erank.token", null);

    private final AtomicReference<String> token = new AtomicReference<>("");
    private volatile RerankTransport transport;

    /** OpenSearch passes the node's settings, keystore included, to a plugin's only public constructor. */
    public ErankPlugin(Settings settings) {
        reload(settings);
    }

    @Override
    public List<Setting<?>> getSettings() {
        return Collections.singletonList(TOKEN);
    }

    /** Reads {@code erank.token} again (node start, {@code _nodes/reload_secure_settings}). */
    @Override
    public void reload(Settings settings) {
        try (SecureString value = TOKEN.get(settings)) {
            token.set(value.toString());
        }
    }

    /** The token calls carry now ("" when none). */
    String token() {
        return token.get();
    }

    @Override
    public List<SearchExtSpec<?>> getSearchExts() {
        return Collections.singletonList(
            new SearchExtSpec<>(ErankSearchExtBuilder.NAME, ErankSearchExtBuilder::new, ErankSearchExtBuilder::parse)
        );
    }

    @Override
    public Map<String, Processor.Factory<SearchRequestProcessor>> getRequestProcessors(Parameters parameters) {
        return Collections.singletonMap(ErankWindowProcessor.TYPE, new ErankWindowProcessor.Factory());
    }

    @Override
    public Map<String, Processor.Factory<SearchResponseProcessor>> getResponseProcessors(Parameters parameters) {
        Executor executor = parameters.genericExecutor == null ? null : parameters.genericExecutor::accept;
        Supplier<RerankTransport> supplier = () -> transport(executor);
        return Collections.singletonMap(
            ErankRerankProcessor.TYPE,
            new ErankRerankProcessor.Factory(supplier, parameters.threadContext, parameters.scheduler)
        );
    }

    /** One HTTP client per node, made on first use. */
    private RerankTransport transport(Executor executor) {
        RerankTransport t = transport;
        if (t == null) {
            synchronized (this) {
                t = transport;
                if (t == null) {
                    t = new HttpRerankTransport(executor, token::get);
                    transport = t;
                }
            }
        }
        return t;
    }
}
