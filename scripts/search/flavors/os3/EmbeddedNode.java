package tandem.search;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.opensearch.Version;
import org.opensearch.common.settings.Settings;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.PluginInfo;
import org.opensearch.transport.TransportService;

/**
 * OpenSearch 3.x embedded node (same protected constructor as OpenSearchIntegTestCase's MockNode).
 * Since 3.0 that constructor takes plugin descriptors ({@code PluginInfo}) instead of classes: a
 * descriptor per classpath plugin class, as MockNode builds them.
 */
final class EmbeddedNode extends Node {

    /** Each row: alternative class names of one classpath plugin; the first that loads is used. */
    static final String[][] PLUGINS = {
        // 3.0 renamed the module plugin classes to *ModulePlugin; the 2.x names are kept as fallbacks
        {"org.opensearch.transport.Netty4ModulePlugin", "org.opensearch.transport.Netty4Plugin"},
        {"org.opensearch.index.reindex.ReindexModulePlugin", "org.opensearch.reindex.ReindexPlugin",
            "org.opensearch.index.reindex.ReindexPlugin"},
        {"org.opensearch.painless.PainlessModulePlugin", "org.opensearch.painless.PainlessPlugin"},
        {"org.opensearch.analysis.common.CommonAnalysisModulePlugin", "org.opensearch.analysis.common.CommonAnalysisPlugin"},
        {"org.opensearch.ingest.common.IngestCommonModulePlugin", "org.opensearch.ingest.common.IngestCommonPlugin"},
        {"org.opensearch.script.mustache.MustacheModulePlugin", "org.opensearch.script.mustache.MustachePlugin"},
        {"org.opensearch.join.ParentJoinModulePlugin", "org.opensearch.join.ParentJoinPlugin"},
        {"org.opensearch.percolator.PercolatorModulePlugin", "org.opensearch.percolator.PercolatorPlugin"},
        {"org.opensearch.index.mapper.MapperExtrasModulePlugin", "org.opensearch.index.mapper.MapperExtrasPlugin"},
        {"org.opensearch.search.aggregations.matrix.MatrixAggregationModulePlugin",
            "org.opensearch.search.aggregations.matrix.MatrixAggregationPlugin"},
        {"org.opensearch.index.rankeval.RankEvalModulePlugin", "org.opensearch.index.rankeval.RankEvalPlugin"},
    };

    static void flavorSettings(Map<String, String> s) {
        s.put("transport.port", "0");
        s.put("reindex.remote.allowlist", "127.0.0.1:*, localhost:*");
    }

    private EmbeddedNode(Settings settings, Collection<Class<? extends Plugin>> plugins) {
        super(
                InternalSettingsPreparer.prepareEnvironment(
                        settings, Collections.emptyMap(), null, () -> settings.get("node.name")),
                descriptors(plugins),
                true);
    }

    private static List<PluginInfo> descriptors(Collection<Class<? extends Plugin>> plugins) {
        List<PluginInfo> infos = new ArrayList<>();
        for (Class<? extends Plugin> c : plugins) {
            infos.add(new PluginInfo(c.getName(), "classpath plugin", "NA", Version.CURRENT,
                    System.getProperty("java.specification.version"), c.getName(), null,
                    Collections.emptyList(), false));
        }
        return infos;
    }

    static Launcher.Handle launch(Map<String, String> settings, List<Class<?>> pluginClasses) throws Exception {
        Settings.Builder b = Settings.builder();
        settings.forEach(b::put);
        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (Class<?> c : pluginClasses) {
            plugins.add(c.asSubclass(Plugin.class));
        }
        EmbeddedNode node = new EmbeddedNode(b.build(), plugins);
        node.start();
        int http = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress().getPort();
        int transport = node.injector().getInstance(TransportService.class).boundAddress().publishAddress().getPort();
        return new Launcher.Handle() {
            public int httpPort() { return http; }
            public int transportPort() { return transport; }
            public String version() { return "opensearch-" + Version.CURRENT; }
            public void close() throws Exception {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            }
        };
    }
}
