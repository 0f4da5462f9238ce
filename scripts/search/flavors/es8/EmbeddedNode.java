package tandem.search;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.elasticsearch.Build;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.ClasspathNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.transport.TransportService;

/**
 * Elasticsearch 8.x / 9.x embedded node (see ClasspathNode / ClasspathPluginsService); the es9
 * flavor compiles this same file.
 */
final class EmbeddedNode {

    /** Each row: alternative class names of one classpath plugin; the first that loads is used. */
    static final String[][] PLUGINS = {
        {"org.elasticsearch.transport.netty4.Netty4Plugin", "org.elasticsearch.transport.Netty4Plugin"},
        // GET / (the rest-root module is not on Maven Central): see RootInfoPlugin
        {"org.elasticsearch.rest.root.MainRestPlugin", "tandem.search.RootInfoPlugin"},
        {"org.elasticsearch.reindex.ReindexPlugin"},
        {"org.elasticsearch.painless.PainlessPlugin"},
        {"org.elasticsearch.analysis.common.CommonAnalysisPlugin"},
        {"org.elasticsearch.ingest.common.IngestCommonPlugin"},
        {"org.elasticsearch.script.mustache.MustachePlugin"},
        {"org.elasticsearch.join.ParentJoinPlugin"},
        {"org.elasticsearch.percolator.PercolatorPlugin"},
        {"org.elasticsearch.index.mapper.extras.MapperExtrasPlugin"},
        {"org.elasticsearch.datastreams.DataStreamsPlugin"},
        {"org.elasticsearch.search.aggregations.matrix.MatrixAggregationPlugin"},
        {"org.elasticsearch.index.rankeval.RankEvalPlugin"},
    };

    private EmbeddedNode() {}

    static void flavorSettings(Map<String, String> s) {
        s.put("transport.port", "0");
        s.put("reindex.remote.whitelist", "127.0.0.1:*, localhost:*");
    }

    /**
     * Elasticsearch loads libzstd (the stored-fields compression of {@code index.codec:
     * best_compression} since 8.14) from {@code $ES_HOME/lib/platform/<os>-<arch>}, which only
     * the distributions ship; embedded, that path is unset and native access is disabled (9.x) or
     * found through JNA's search path (8.x on Java 17). Point {@code es.nativelibs.path} at a
     * directory holding a link to the system's libzstd (Debian/Ubuntu: package libzstd1).
     */
    private static void nativeLibraries(Path home) throws IOException {
        if (System.getProperty("es.nativelibs.path") != null) {
            return;
        }
        Path dir = home.resolve("lib").resolve("native");
        Files.createDirectories(dir);
        System.setProperty("es.nativelibs.path", dir.toString());
        String arch = System.getProperty("os.arch").equals("amd64") ? "x86_64" : System.getProperty("os.arch");
        Path link = dir.resolve(System.mapLibraryName("zstd"));
        for (String candidate : new String[] {
            "/usr/lib/" + arch + "-linux-gnu/libzstd.so.1", "/lib/" + arch + "-linux-gnu/libzstd.so.1",
            "/usr/lib64/libzstd.so.1", "/usr/lib/libzstd.so.1", "/usr/local/lib/libzstd.so.1"}) {
            Path lib = Paths.get(candidate);
            if (Files.isReadable(lib)) {
                Files.deleteIfExists(link);
                Files.createSymbolicLink(link, lib);
                Launcher.log("native zstd: " + lib);
                return;
            }
        }
        Launcher.log("no system libzstd found: indices with index.codec=best_compression will fail to write");
    }

    static Launcher.Handle launch(Map<String, String> settings, List<Class<?>> pluginClasses) throws Exception {
        // Elasticsearch's own logging facade (org.elasticsearch.logging) over log4j; the distribution's
        // bootstrap does this, log4j itself is configured by -Dlog4j.configurationFile (node.sh).
        LogConfigurator.configureESLogging();
        nativeLibraries(Paths.get(settings.get("path.home")));
        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (Class<?> c : pluginClasses) {
            plugins.add(c.asSubclass(Plugin.class));
        }
        if (plugins.stream().noneMatch(c -> c.getName().endsWith(".ReindexPlugin"))) {
            // registered by the reindex module only: unknown (and refused) without it
            Launcher.log("no reindex module: dropping reindex.remote.whitelist");
            settings.remove("reindex.remote.whitelist");
        }
        Settings.Builder b = Settings.builder();
        settings.forEach(b::put);
        Settings s = b.build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
                s, Collections.emptyMap(), null, () -> s.get("node.name"));
        ClasspathNode node = new ClasspathNode(env, plugins);
        node.start();
        int http = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress().getPort();
        int transport = node.injector().getInstance(TransportService.class).boundAddress().publishAddress().getPort();
        return new Launcher.Handle() {
            public int httpPort() { return http; }
            public int transportPort() { return transport; }
            public String version() { return "elasticsearch-" + Build.current().version(); }
            public void close() throws Exception {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            }
        };
    }
}
