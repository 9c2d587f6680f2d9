#pragma once
// The job's field table: every section of the job file in file order, each field of each
// section with its type, default, meaning, and how it binds into a JobConfig (the components'
// sections, core/config_field.hpp, lifted onto the aggregate). Parsing, --set overrides,
// to_toml(), same_settings() and the field reference all walk this one list.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/core/config_field.hpp"
#include "fusellm/job/job_config.hpp"

namespace fusellm {

struct JobField {
  std::string_view key{};
  config::Value::Kind kind = config::Value::Kind::String;
  std::string type{};         // documentation
  std::string default_doc{};  // documentation (Markdown)
  std::string_view meaning{};
  std::string_view required{};  // non-empty: must be set; what it holds
  // `index`: the [[source]] table; 0 for the other sections.
  std::function<void(JobConfig&, size_t index, const config::Value&, const config::SetContext&)> set{};
  std::function<std::optional<config::Value>(const JobConfig&, size_t index)> get{};
  std::function<bool(const JobConfig&, size_t index)> written{};
};

struct JobSectionTable {
  std::string_view name{};
  std::string_view note{};
  bool array_of_tables = false;  // [[source]]
  std::string_view required{};   // non-empty: the section must be there; what to set in it
  std::vector<JobField> fields{};
  // Settings of one section (instance) that contradict each other: throws config::Conflict.
  std::function<void(const JobConfig&, size_t index, const config::IsSet&)> check{};
  // Defaults that depend on other settings (output_dir from the name, a source's tokenizer from
  // its path), filled in after the section is read; `job_dir` anchors relative defaults.
  std::function<void(JobConfig&, size_t index, const config::FieldOrigins&, const std::string& job_dir)> finish{};

  size_t instances(const JobConfig& c) const { return array_of_tables ? c.sources.size() : 1; }
  const JobField* find(std::string_view key) const;
  std::vector<std::string_view> keys() const;
  // "[optim].lr", "source[1].path"; key empty: "[optim]", "source[1]".
  std::string label(size_t index, std::string_view key) const;
};

// Every section, in the order the job file and to_toml() list them.
const std::vector<JobSectionTable>& job_sections();
const JobSectionTable* find_job_section(std::string_view name);

// The field reference as Markdown: per section a heading, its note and a table of field, type,
// default and meaning. `fusellm job-fields` prints it; jobs/README.md holds it (a test checks).
std::string job_fields_markdown();

}  // namespace fusellm
