package tandem.search;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.elasticsearch.Version;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.transport.TransportService;

/** Elasticsearch 6.8 embedded node (same protected constructor as ESIntegTestCase's MockNode). */
final class EmbeddedNode extends Node {

    /** Each row: alternative class names of one classpath plugin; the first that loads is used. */
    static final String[][] PLUGINS = {
        {"org.elasticsearch.transport.Netty4Plugin"},
        {"org.elasticsearch.index.reindex.ReindexPlugin"},
        {"org.elasticsearch.painless.PainlessPlugin"},
        {"org.elasticsearch.analysis.common.CommonAnalysisPlugin"},
        {"org.elasticsearch.ingest.common.IngestCommonPlugin"},
        {"org.elasticsearch.script.mustache.MustachePlugin"},
        {"org.elasticsearch.join.ParentJoinPlugin"},
        {"org.elasticsearch.percolator.PercolatorPlugin"},
        {"org.elasticsearch.index.mapper.MapperExtrasPlugin"},
        {"org.elasticsearch.search.aggregations.matrix.MatrixAggregationPlugin"},
        {"org.elasticsearch.index.rankeval.RankEvalPlugin"},
    };

    static void flavorSettings(Map<String, String> s) {
        s.put("transport.tcp.port", "0");
        s.put("reindex.remote.whitelist", "127.0.0.1:*, localhost:*");
    }

    private EmbeddedNode(Settings settings, Collection<Class<? extends Plugin>> plugins) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, null, Collections.emptyMap(), null), plugins, true);
    }

    @Override
    protected void registerDerivedNodeNameWithLogger(String nodeName) {
        // node.name is always set explicitly, nothing to register
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
            public String version() { return "elasticsearch-" + Version.CURRENT; }
            public void close() throws Exception { node.close(); }
        };
    }
}
