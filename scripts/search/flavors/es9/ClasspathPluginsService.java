package org.elasticsearch.plugins;

import java.lang.reflect.Constructor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.elasticsearch.Build;
import org.elasticsearch.action.admin.cluster.node.info.PluginsAndModules;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.spi.SPIClassIterator;

/**
 * Plugins service of the embedded Elasticsearch 9.x node (the 8.x one plus the descriptor's
 * deployment target): the plugins are classes on the
 * application classpath (no plugin bundles, no per-plugin class loaders), as the test framework's
 * MockPluginsService does. Lives in {@code org.elasticsearch.plugins} for the package-private
 * {@code LoadedPlugin}, {@code loadPlugin} and {@code loadExtensions}.
 */
public final class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> loaded;

    public ClasspathPluginsService(Environment environment, Collection<Class<? extends Plugin>> classes) {
        super(environment.settings(), environment.configDir(),
                new PluginsLoader(Collections.emptySet(), Collections.emptySet(), Collections.emptyMap()));
        Settings settings = environment.settings();
        List<LoadedPlugin> list = new ArrayList<>();
        for (Class<? extends Plugin> c : classes) {
            Plugin plugin = loadPlugin(c, settings, environment.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                    c.getName(), "classpath plugin", "NA", Build.current().version(),
                    Integer.toString(Runtime.version().feature()), c.getName(), null,
                    Collections.emptyList(), false, false, false, false, PluginDescriptor.DeploymentTarget.ALL);
            list.add(new LoadedPlugin(descriptor, plugin, ClasspathPluginsService.class.getClassLoader()));
        }
        loadExtensions(list);
        this.loaded = List.copyOf(list);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return loaded;
    }

    @Override
    public PluginsAndModules info() {
        List<PluginRuntimeInfo> infos = new ArrayList<>();
        for (LoadedPlugin p : loaded) {
            infos.add(new PluginRuntimeInfo(p.descriptor()));
        }
        return new PluginsAndModules(infos, List.of());
    }

    /**
     * All plugins share one class loader, so the service files of every jar are visible from every
     * plugin: create each provider class once, and skip one-argument constructors that take
     * another plugin's type.
     */
    @Override
    public <T> List<? extends T> loadServiceProviders(Class<T> service) {
        Map<Class<?>, T> found = new LinkedHashMap<>();
        for (LoadedPlugin p : loaded) {
            Plugin plugin = p.instance();
            Iterator<Class<? extends T>> it = SPIClassIterator.get(service, plugin.getClass().getClassLoader());
            while (it.hasNext()) {
                Class<? extends T> c = it.next();
                if (found.containsKey(c) || !acceptsPlugin(c, plugin)) {
                    continue;
                }
                found.put(c, createExtension(c, service, plugin));
            }
        }
        return List.copyOf(found.values());
    }

    private static boolean acceptsPlugin(Class<?> c, Plugin plugin) {
        for (Constructor<?> k : c.getConstructors()) {
            if (k.getParameterCount() == 1 && !k.getParameterTypes()[0].isInstance(plugin)) {
                return false;
            }
        }
        return true;
    }
}
