package org.elasticsearch.node;

import java.util.Collection;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

/**
 * A real Elasticsearch 8.x / 9.x node whose plugins are classpath classes. Since 8.10 the
 * classpath-plugins constructor is gone; the node is built from a {@code NodeConstruction} with a
 * {@code NodeServiceProvider} whose plugins service is {@link ClasspathPluginsService}, as the test
 * framework's MockNode does (without any of its mock services). Lives in
 * {@code org.elasticsearch.node} for those package-private types.
 */
public final class ClasspathNode extends Node {

    public ClasspathNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader loader) {
                return new ClasspathPluginsService(env, plugins);
            }
        }, true));
    }
}
