#pragma once
// Byte strings of any length through a transport's collectives, for the small texts ranks must
// agree on (a checkpoint's file records, its candidate directories, an error one rank met): the
// fixed-size collectives of transport.hpp carry the lengths first, then the bytes. Every rank of
// the transport calls them, in the same order, as it calls any collective.
#include <string>
#include <vector>

#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

// root's text on every rank (the others pass anything).
std::string broadcast_text(Transport& t, std::string text, int root);
// Every rank's text, indexed by rank, on every rank.
std::vector<std::string> all_gather_text(Transport& t, const std::string& mine);

}  // namespace fusellm::dist
