package tandem.search;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.zip.CRC32;

/**
 * Flavor-independent part of the embedded search-node launcher.
 *
 * <p>Compiled together with exactly one flavor-specific {@code EmbeddedNode} (see
 * {@code scripts/search/flavors/<flavor>/EmbeddedNode.java}), which subclasses the real
 * {@code Node} of that Elasticsearch / OpenSearch version through its protected
 * "classpath plugins" constructor, the way the projects' own integration tests do.
 *
 * <p>Usage: {@code tandem.search.Launcher <state-dir> [-Ekey=value ...]}
 *
 * <p>Writes {@code <state-dir>/ports} ({@code pid=}, {@code http=}, {@code transport=},
 * {@code version=}) once the node has bound its ports. Logs go to stdout (node.sh
 * redirects them to {@code <state-dir>/node.log}). SIGTERM closes the node cleanly.
 */
public final class Launcher {

    /** What a flavor hands back once its node runs. */
    interface Handle {
        int httpPort();

        int transportPort();

        String version();

        void close() throws Exception;
    }

    private Launcher() {}

    static void log(String msg) {
        System.out.println("[tandem-launcher] " + msg);
        System.out.flush();
    }

    /** Loads the plugin classes that are present on the classpath; missing ones are reported and skipped. */
    static List<Class<?>> loadPlugins(String[][] candidates) {
        List<Class<?>> found = new ArrayList<>();
        for (String[] alternatives : candidates) {
            Class<?> c = null;
            for (String name : alternatives) {
                try {
                    c = Class.forName(name, false, Launcher.class.getClassLoader());
                    break;
                } catch (ClassNotFoundException | LinkageError e) {
                    // try the next alternative
                }
            }
            if (c == null) {
                log("plugin not on classpath, skipped: " + String.join(" | ", alternatives));
            } else {
                log("classpath plugin: " + c.getName());
                found.add(c);
            }
        }
        return found;
    }

    private static String clusterName(Path state) {
        CRC32 crc = new CRC32();
        crc.update(state.toString().getBytes(StandardCharsets.UTF_8));
        String base = state.getFileName() == null ? "node" : state.getFileName().toString();
        base = base.toLowerCase().replaceAll("[^a-z0-9_-]", "-");
        if (base.length() > 40) {
            base = base.substring(0, 40);
        }
        return "tandem-" + base + "-" + Long.toHexString(crc.getValue());
    }

    private static void writeAtomically(Path target, String content) throws IOException {
        Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
        Files.write(tmp, content.getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: tandem.search.Launcher <state-dir> [-Ekey=value ...]");
            System.exit(2);
        }
        final Path state = Paths.get(args[0]).toAbsolutePath().normalize();
        Path home = state.resolve("home");
        Path data = state.resolve("data");
        Path logs = state.resolve("logs");
        Path repo = state.resolve("repo");
        for (Path p : new Path[] {home, home.resolve("config"), home.resolve("plugins"), data, logs, repo}) {
            Files.createDirectories(p);
        }

        String cluster = clusterName(state);
        Map<String, String> settings = new LinkedHashMap<>();
        settings.put("cluster.name", cluster);
        settings.put("node.name", cluster + "-n0");
        settings.put("path.home", home.toString());
        settings.put("path.data", data.toString());
        settings.put("path.logs", logs.toString());
        // path.repo is a list: a directory shared by several nodes (snapshot-based
        // backfill registers one fs repository on both clusters) is added when set.
        String shared = System.getenv("TANDEM_SEARCH_SHARED_REPO");
        if (shared != null && !shared.isEmpty()) {
            Path sharedRepo = Paths.get(shared).toAbsolutePath().normalize();
            Files.createDirectories(sharedRepo);
            settings.put("path.repo", repo + "," + sharedRepo);
        } else {
            settings.put("path.repo", repo.toString());
        }
        settings.put("network.host", "127.0.0.1");
        // 0 = let the kernel pick a free port (race-free); the bound ports are reported in <state>/ports.
        settings.put("http.port", "0");
        settings.put("discovery.type", "single-node");
        settings.put("action.auto_create_index", "true");
        settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        settings.put("http.type", "netty4");
        settings.put("transport.type", "netty4");
        EmbeddedNode.flavorSettings(settings); // transport port key, reindex allow-list, ...
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("-E") || a.indexOf('=') < 0) {
                System.err.println("unexpected argument (want -Ekey=value): " + a);
                System.exit(2);
            }
            String kv = a.substring(2);
            int eq = kv.indexOf('=');
            settings.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        for (Map.Entry<String, String> e : settings.entrySet()) {
            log("setting " + e.getKey() + ": " + e.getValue());
        }

        List<Class<?>> plugins = loadPlugins(EmbeddedNode.PLUGINS);

        final Handle handle;
        try {
            handle = EmbeddedNode.launch(settings, plugins);
        } catch (Throwable t) {
            log("node failed to start: " + t);
            t.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(1);
            return;
        }

        final CountDownLatch closed = new CountDownLatch(1);
        final PrintStream out = System.out;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            out.println("[tandem-launcher] shutting down");
            try {
                handle.close();
            } catch (Throwable t) {
                t.printStackTrace(out);
            }
            out.println("[tandem-launcher] closed");
            out.flush();
            closed.countDown();
        }, "tandem-shutdown"));

        long pid = ProcessHandle.current().pid();
        String ports = "pid=" + pid + "\nhttp=" + handle.httpPort() + "\ntransport=" + handle.transportPort()
                + "\nversion=" + handle.version() + "\ncluster=" + cluster + "\n";
        writeAtomically(state.resolve("ports"), ports);
        log("started " + handle.version() + " http=127.0.0.1:" + handle.httpPort() + " transport=127.0.0.1:"
                + handle.transportPort() + " pid=" + pid);

        // Optional watchdog: exit when the process that asked for this node goes away.
        String watch = System.getenv("TANDEM_SEARCH_WATCH_PID");
        if (watch != null && !watch.trim().isEmpty()) {
            final long watched = Long.parseLong(watch.trim());
            Thread t = new Thread(() -> {
                while (true) {
                    boolean alive = ProcessHandle.of(watched).map(ProcessHandle::isAlive).orElse(false);
                    if (!alive) {
                        log("watched pid " + watched + " is gone, exiting");
                        System.exit(0);
                    }
                    try {
                        Thread.sleep(2000);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "tandem-watchdog");
            t.setDaemon(true);
            t.start();
            log("watching pid " + watched);
        }

        closed.await();
    }
}
