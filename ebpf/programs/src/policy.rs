//! Security-group rules, compiled (docs/security-groups.md, "Rules", "Where rules are
//! enforced"): the kernel's `IDENTITIES` and `POLICY` tries as the [`PolicyTables`] of the
//! shared decision (`ctpath_common::policy::decide`), which the AF_XDP forwarder runs over its
//! own copies of the same contents.

use ctpath_common::{maps::PolicyRuleKey, policy::PolicyTables};

use crate::maps;

/// The compiled rules in the kernel's maps.
pub struct KernelPolicy;

impl PolicyTables for KernelPolicy {
    #[inline(always)]
    fn identity(&self, vni: u32, ip: [u8; 4]) -> u32 {
        maps::identity(vni, ip)
    }

    #[inline(always)]
    fn policy_rule(&self, key: PolicyRuleKey) -> Option<u32> {
        maps::policy_rule(key)
    }
}
