//! The versions of the plugin interface the host serves, side by side:
//! `ward:plugin@0.1.0` (`plugin-sdk/wit/v0.1.0/`) and `ward:plugin@0.2.0`
//! (`plugin-sdk/wit/`, which adds the `jobs` interface: child jobs and
//! progress).
//!
//! In the component model 0.1 and 0.2 are different interfaces, not
//! compatible versions of one, so the linker carries both sets of host
//! imports and a component picks the one it was built against. Which one
//! that is is read from its imports once, at load ([`World::of`]); each
//! attempt then instantiates it with the bindings of its own world. The
//! two worlds' `handle` take and return the same shapes, so the rest of the
//! runtime only ever sees the 0.1.0 types.

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::HostState;
use super::bindings::ward::plugin::types as wit;

/// The bindings of `ward:plugin@0.2.0`.
pub(super) mod v2 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "job-plugin",
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

use v2::ward::plugin::types as wit2;

/// Which version of the plugin interface a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum World {
    /// `ward:plugin/job-plugin@0.1.0`: log, checkpoint, secret.
    V0_1,
    /// `ward:plugin/job-plugin@0.2.0`: 0.1.0 plus child jobs and progress.
    V0_2,
}

impl World {
    /// The world a component targets: 0.2.0 when it imports any interface
    /// of `ward:plugin@0.2.*`, else 0.1.0 (whose `handle` has the same
    /// shape, so a component that imports nothing of Ward runs either way).
    pub(super) fn of(component: &Component, engine: &Engine) -> World {
        let v2 = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("ward:plugin/") && name.contains("@0.2."));
        if v2 { World::V0_2 } else { World::V0_1 }
    }

    /// The package version, as the WIT names it.
    #[must_use]
    pub fn version(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.0",
            World::V0_2 => "0.2.0",
        }
    }
}

/// Adds the imports of every world to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    super::bindings::JobPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v2::JobPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// A component checked against its world, ready to instantiate.
pub(super) enum Pre {
    /// Built against 0.1.0.
    V0_1(super::bindings::JobPluginPre<HostState>),
    /// Built against 0.2.0.
    V0_2(v2::JobPluginPre<HostState>),
}

impl Pre {
    /// Checks `pre`'s exports against `world`.
    pub(super) fn new(world: World, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        Ok(match world {
            World::V0_1 => Pre::V0_1(super::bindings::JobPluginPre::new(pre)?),
            World::V0_2 => Pre::V0_2(v2::JobPluginPre::new(pre)?),
        })
    }

    /// The world it was checked against.
    pub(super) fn world(&self) -> World {
        match self {
            Pre::V0_1(_) => World::V0_1,
            Pre::V0_2(_) => World::V0_2,
        }
    }

    /// The engine it was compiled for.
    pub(super) fn engine(&self) -> &Engine {
        match self {
            Pre::V0_1(p) => p.engine(),
            Pre::V0_2(p) => p.engine(),
        }
    }

    /// A fresh instance in `store`.
    pub(super) async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(p) => Instance::V0_1(p.instantiate_async(store).await?),
            Pre::V0_2(p) => Instance::V0_2(p.instantiate_async(store).await?),
        })
    }
}

/// An instance of either world.
pub(super) enum Instance {
    /// Built against 0.1.0.
    V0_1(super::bindings::JobPlugin),
    /// Built against 0.2.0.
    V0_2(v2::JobPlugin),
}

impl Instance {
    /// Calls `handle` with `job`, whose payload is moved in and back out
    /// (never copied), whatever the world.
    pub(super) async fn call_handle(
        &self,
        store: &mut Store<HostState>,
        job: &mut wit::Job,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::Failure>> {
        match self {
            Instance::V0_1(i) => i.call_handle(store, job).await,
            Instance::V0_2(i) => {
                let v2_job = wit2::Job {
                    id: std::mem::take(&mut job.id),
                    name: std::mem::take(&mut job.name),
                    payload: std::mem::take(&mut job.payload),
                    attempt: job.attempt,
                    idempotency_key: job.idempotency_key.take(),
                    checkpoint: job.checkpoint.take(),
                };
                let result = i.call_handle(store, &v2_job).await;
                job.id = v2_job.id;
                job.name = v2_job.name;
                job.payload = v2_job.payload;
                Ok(result?.map_err(from_v2))
            }
        }
    }
}

/// A 0.2.0 failure as the 0.1.0 one it is field for field.
fn from_v2(f: wit2::Failure) -> wit::Failure {
    wit::Failure {
        class: match f.class {
            wit2::FailureClass::Transient => wit::FailureClass::Transient,
            wit2::FailureClass::Recoverable => wit::FailureClass::Recoverable,
            wit2::FailureClass::Permanent => wit::FailureClass::Permanent,
        },
        message: f.message,
        code: f.code,
        upstream: f.upstream,
        retry_after_ms: f.retry_after_ms,
    }
}
