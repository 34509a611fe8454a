// state_file (cluster/saved_state.h): what it keeps survives its own text, a restore fences
// the nodes it names, and a file pgplex cannot read is refused with a reason, never a throw.
#include <criterion/criterion.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "pgplex/cluster/saved_state.h"

using namespace pgplex::cluster;

namespace {

NodeState node_named(const std::string& name) {
    NodeState node;
    node.config.name = name;
    node.status.name = name;
    return node;
}

}  // namespace

Test(saved_state, its_text_reads_back_the_same_even_with_awkward_names) {
    std::vector<SavedCluster> clusters(2);
    clusters[0] = {"pg-test", 1'800'000'000'000'123ull, "127.0.0.1:5433", {"a", "b\"q\\x"}};
    clusters[1] = {"tab\there", 0, "", {}};
    std::vector<SavedCluster> back;
    std::string reason;
    cr_assert(parse_saved_state(format_saved_state(clusters), back, reason), "%s", reason.c_str());
    cr_assert(back == clusters ||
              (back.size() == 2 && back[0] == clusters[1] && back[1] == clusters[0]));
}

Test(saved_state, bad_text_is_refused_with_a_reason) {
    for (const char* text :
         {"[clusters.c]\nepoch = \"x\"\n", "[clusters.c]\nfenced = [1]\nepoch = 1", "clusters = 3",
          "[clusters.c\n", "[clusters.c]\nepoch = -1\n"}) {
        std::vector<SavedCluster> out;
        std::string reason;
        cr_assert_not(parse_saved_state(text, out, reason), "%s", text);
        cr_assert_not(reason.empty());
        cr_assert(out.empty());
    }
}

Test(saved_state, restore_fences_named_nodes_and_never_moves_the_epoch_back) {
    NodeState one = node_named("one"), two = node_named("two");
    std::vector<NodeState*> nodes{&one, &two};
    Derivation cluster;
    cluster.epoch = 7;
    SavedCluster saved{"c", 5, "two", {"gone", "one"}};
    restore(saved, cluster, nodes);
    cr_assert(one.status.fenced);
    cr_assert_not(one.fence_applied);
    cr_assert_not(two.status.fenced);
    cr_assert_eq(cluster.epoch, 7u);
    cr_assert_eq(cluster.last_primary, "two");
    SavedCluster now = saved_of("c", cluster, nodes);
    cr_assert_eq(now.epoch, 7u);
    cr_assert_eq(now.fenced, std::vector<std::string>{"one"});
}

Test(saved_state, a_missing_file_is_a_first_start_and_a_written_one_reads_back) {
    char directory[] = "/tmp/pgplex-saved-XXXXXX";
    cr_assert_not_null(mkdtemp(directory));
    std::string path = std::string(directory) + "/state";
    std::vector<SavedCluster> out{{"stale", 1, "", {}}};
    std::string reason;
    cr_assert(read_saved_state(path, out, reason));
    cr_assert(out.empty());
    std::vector<SavedCluster> clusters{{"c", 3, "n2", {"n1"}}};
    cr_assert(write_saved_state(path, clusters, reason), "%s", reason.c_str());
    cr_assert(read_saved_state(path, out, reason), "%s", reason.c_str());
    cr_assert(out == clusters);
    cr_assert_not(
        write_saved_state(std::string(directory) + "/no/such/dir/state", clusters, reason));
    cr_assert_not(reason.empty());
    unlink(path.c_str());
    rmdir(directory);
}
