//! Scene description and the ray-casting renderer.

use crate::camera::{CameraTrajectory, Intrinsics, Pose};
use crate::error::{Result, WorldError};
use crate::motion::ObjectMotion;
use glam::DVec3;
use image::RgbImage;
use rayon::prelude::*;

/// Procedural solid textures, evaluated at a point (world coordinates for background planes,
/// object-local coordinates for objects so the texture moves with the object).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Texture {
    Solid([f32; 3]),
    /// 3-D checkerboard with cell size `scale` metres.
    Checker {
        a: [f32; 3],
        b: [f32; 3],
        scale: f64,
    },
    /// Stripes along the x+z diagonal, period `scale` metres.
    Stripes {
        a: [f32; 3],
        b: [f32; 3],
        scale: f64,
    },
    /// Value noise blended between two colours, feature size `scale` metres.
    Noise {
        a: [f32; 3],
        b: [f32; 3],
        scale: f64,
        seed: u64,
    },
}

fn hash3(x: i64, y: i64, z: i64, seed: u64) -> f64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [x, y, z] {
        h ^= v as u64;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 29;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn value_noise(p: DVec3, seed: u64) -> f64 {
    let f = p.floor();
    let t = p - f;
    let s = t * t * (DVec3::splat(3.0) - 2.0 * t);
    let (x, y, z) = (f.x as i64, f.y as i64, f.z as i64);
    let mut acc = 0.0;
    for dz in 0..2 {
        for dy in 0..2 {
            for dx in 0..2 {
                let w = (if dx == 1 { s.x } else { 1.0 - s.x })
                    * (if dy == 1 { s.y } else { 1.0 - s.y })
                    * (if dz == 1 { s.z } else { 1.0 - s.z });
                acc += w * hash3(x + dx, y + dy, z + dz, seed);
            }
        }
    }
    acc
}

fn mix(a: [f32; 3], b: [f32; 3], t: f64) -> [f32; 3] {
    let t = t as f32;
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

impl Texture {
    pub fn color(&self, p: DVec3) -> [f32; 3] {
        match *self {
            Texture::Solid(c) => c,
            Texture::Checker { a, b, scale } => {
                let q = (p / scale + DVec3::splat(1e-6)).floor();
                if (q.x as i64 + q.y as i64 + q.z as i64).rem_euclid(2) == 0 {
                    a
                } else {
                    b
                }
            }
            Texture::Stripes { a, b, scale } => {
                if (((p.x + p.z) / scale).floor() as i64).rem_euclid(2) == 0 {
                    a
                } else {
                    b
                }
            }
            Texture::Noise { a, b, scale, seed } => {
                let q = p / scale;
                let n =
                    0.65 * value_noise(q, seed) + 0.35 * value_noise(q * 2.7, seed.wrapping_add(1));
                mix(a, b, n)
            }
        }
    }
}

/// Analytic primitives, in object-local coordinates centred on the object's position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Sphere {
        radius: f64,
    },
    /// Axis-aligned box.
    Cuboid {
        half_extents: DVec3,
    },
    /// Vertical (world Y) capped cylinder.
    Cylinder {
        radius: f64,
        half_height: f64,
    },
}

impl Shape {
    fn validate(&self) -> Result<()> {
        let ok = match *self {
            Shape::Sphere { radius } => radius > 0.0,
            Shape::Cuboid { half_extents } => half_extents.min_element() > 0.0,
            Shape::Cylinder {
                radius,
                half_height,
            } => radius > 0.0 && half_height > 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(WorldError::InvalidParameter(format!(
                "degenerate shape {self:?}"
            )))
        }
    }

    /// Nearest hit `t > t_min` of the ray `o + t d` (local coordinates) and the outward normal.
    fn intersect(&self, o: DVec3, d: DVec3, t_min: f64) -> Option<(f64, DVec3)> {
        match *self {
            Shape::Sphere { radius } => {
                let a = d.dot(d);
                let b = o.dot(d);
                let c = o.dot(o) - radius * radius;
                let disc = b * b - a * c;
                if disc < 0.0 {
                    return None;
                }
                let sq = disc.sqrt();
                let t = [(-b - sq) / a, (-b + sq) / a]
                    .into_iter()
                    .find(|&t| t > t_min)?;
                Some((t, (o + d * t) / radius))
            }
            Shape::Cuboid { half_extents: h } => {
                let inv = d.recip();
                let t0 = (-h - o) * inv;
                let t1 = (h - o) * inv;
                let tn = t0.min(t1);
                let tf = t0.max(t1);
                let t_near = tn.max_element();
                let t_far = tf.min_element();
                if t_near > t_far || t_far <= t_min {
                    return None;
                }
                let t = if t_near > t_min { t_near } else { t_far };
                let p = o + d * t;
                let q = p / h;
                let a = q.abs();
                let n = if a.x >= a.y && a.x >= a.z {
                    DVec3::new(q.x.signum(), 0.0, 0.0)
                } else if a.y >= a.z {
                    DVec3::new(0.0, q.y.signum(), 0.0)
                } else {
                    DVec3::new(0.0, 0.0, q.z.signum())
                };
                Some((t, n))
            }
            Shape::Cylinder {
                radius,
                half_height,
            } => {
                let mut best: Option<(f64, DVec3)> = None;
                let a = d.x * d.x + d.z * d.z;
                if a > 1e-12 {
                    let b = o.x * d.x + o.z * d.z;
                    let c = o.x * o.x + o.z * o.z - radius * radius;
                    let disc = b * b - a * c;
                    if disc >= 0.0 {
                        let sq = disc.sqrt();
                        for t in [(-b - sq) / a, (-b + sq) / a] {
                            let y = o.y + d.y * t;
                            if t > t_min && y.abs() <= half_height {
                                let p = o + d * t;
                                best = Some((t, DVec3::new(p.x, 0.0, p.z) / radius));
                                break;
                            }
                        }
                    }
                }
                if d.y.abs() > 1e-12 {
                    for (y, ny) in [(half_height, 1.0), (-half_height, -1.0)] {
                        let t = (y - o.y) / d.y;
                        let p = o + d * t;
                        if t > t_min
                            && p.x * p.x + p.z * p.z <= radius * radius
                            && best.is_none_or(|(bt, _)| t < bt)
                        {
                            best = Some((t, DVec3::new(0.0, ny, 0.0)));
                        }
                    }
                }
                best
            }
        }
    }
}

/// An infinite background plane `{p : (p - point) · normal = 0}` (instance id 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    pub point: DVec3,
    pub normal: DVec3,
    pub texture: Texture,
}

/// A scene object with a non-zero instance id.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: u16,
    pub name: String,
    pub shape: Shape,
    pub texture: Texture,
    /// Centre at frame 0 (before its motion starts).
    pub position: DVec3,
    pub motion: Option<ObjectMotion>,
}

/// Background planes, objects and lighting.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub planes: Vec<Plane>,
    pub objects: Vec<Object>,
    /// Direction *towards* the light (world), normalised on use.
    pub light_dir: DVec3,
    pub ambient: f32,
    /// Colour of rays that hit nothing (depth `inf`, id 0).
    pub sky: [f32; 3],
}

impl Scene {
    /// A room: textured ground (`y = 0`) and back/left/right walls, no objects.
    /// The room spans `x ∈ [-half_width, half_width]`, walls at `z = depth` and `x = ±half_width`.
    pub fn room(half_width: f64, depth: f64, seed: u64) -> Self {
        let ground = Plane {
            point: DVec3::ZERO,
            normal: DVec3::Y,
            texture: Texture::Checker {
                a: [0.85, 0.85, 0.8],
                b: [0.25, 0.3, 0.35],
                scale: 1.0,
            },
        };
        let back = Plane {
            point: DVec3::new(0.0, 0.0, depth),
            normal: -DVec3::Z,
            texture: Texture::Noise {
                a: [0.2, 0.35, 0.6],
                b: [0.9, 0.8, 0.6],
                scale: 0.7,
                seed,
            },
        };
        let left = Plane {
            point: DVec3::new(-half_width, 0.0, 0.0),
            normal: DVec3::X,
            texture: Texture::Stripes {
                a: [0.7, 0.3, 0.3],
                b: [0.95, 0.9, 0.85],
                scale: 0.5,
            },
        };
        let right = Plane {
            point: DVec3::new(half_width, 0.0, 0.0),
            normal: -DVec3::X,
            texture: Texture::Noise {
                a: [0.3, 0.6, 0.3],
                b: [0.9, 0.95, 0.8],
                scale: 0.5,
                seed: seed.wrapping_add(7),
            },
        };
        Self {
            planes: vec![ground, back, left, right],
            objects: Vec::new(),
            light_dir: DVec3::new(0.4, 1.0, -0.5),
            ambient: 0.35,
            sky: [0.6, 0.75, 0.95],
        }
    }

    /// Adds an object; its id must be non-zero and unused.
    pub fn add_object(&mut self, object: Object) -> Result<()> {
        if object.id == 0 || self.objects.iter().any(|o| o.id == object.id) {
            return Err(WorldError::InvalidObjectId(object.id));
        }
        object.shape.validate()?;
        self.objects.push(object);
        Ok(())
    }

    /// World centre of every object at `frame`, given the camera poses of the clip (the motion
    /// direction is defined by the camera pose at the motion's start frame).
    pub fn object_positions(&self, frame: usize, camera_poses: &[Pose]) -> Vec<DVec3> {
        self.objects
            .iter()
            .map(|o| match &o.motion {
                Some(m) => {
                    let cam = camera_poses[m.start_frame.min(camera_poses.len() - 1)];
                    o.position + m.displacement(frame, &cam, o.position)
                }
                None => o.position,
            })
            .collect()
    }
}

/// One rendered frame. Buffers are row-major, `index = v * width + u`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub rgb: RgbImage,
    /// Depth in metres along the optical axis (camera z); `f32::INFINITY` where nothing was hit.
    pub depth: Vec<f32>,
    /// Instance id of the surface under each pixel centre; 0 = background (planes, sky).
    pub ids: Vec<u16>,
}

impl Frame {
    pub fn width(&self) -> u32 {
        self.rgb.width()
    }
    pub fn height(&self) -> u32 {
        self.rgb.height()
    }
    pub fn depth_at(&self, u: u32, v: u32) -> f32 {
        self.depth[(v * self.width() + u) as usize]
    }
    pub fn id_at(&self, u: u32, v: u32) -> u16 {
        self.ids[(v * self.width() + u) as usize]
    }
    /// Binary mask (row-major) of one instance.
    pub fn mask(&self, id: u16) -> Vec<bool> {
        self.ids.iter().map(|&i| i == id).collect()
    }
}

/// Casts the ray through each pixel centre of `pose` and shades the nearest hit (Lambert +
/// ambient, hard shadows not modelled). `positions[i]` is the world centre of `scene.objects[i]`.
pub fn render_frame(
    scene: &Scene,
    positions: &[DVec3],
    pose: &Pose,
    k: &Intrinsics,
) -> Result<Frame> {
    if k.width == 0 || k.height == 0 {
        return Err(WorldError::ZeroSize {
            width: k.width,
            height: k.height,
        });
    }
    let (w, h) = (k.width as usize, k.height as usize);
    let light = scene.light_dir.normalize();
    let mut depth = vec![f32::INFINITY; w * h];
    let mut ids = vec![0u16; w * h];
    let mut rgb = vec![0u8; w * h * 3];
    let origin = pose.center;
    rgb.par_chunks_mut(w * 3)
        .zip(depth.par_chunks_mut(w))
        .zip(ids.par_chunks_mut(w))
        .enumerate()
        .for_each(|(v, ((rgb_row, depth_row), id_row))| {
            for u in 0..w {
                let d = pose.cam_dir_to_world(k.ray_cam(u as f64, v as f64));
                // (t, normal, texture, texture point, id)
                let mut best: Option<(f64, DVec3, Texture, DVec3, u16)> = None;
                for pl in &scene.planes {
                    let denom = d.dot(pl.normal);
                    if denom.abs() < 1e-12 {
                        continue;
                    }
                    let t = (pl.point - origin).dot(pl.normal) / denom;
                    if t > 1e-6 && best.is_none_or(|b| t < b.0) {
                        let n = if denom < 0.0 { pl.normal } else { -pl.normal };
                        best = Some((t, n, pl.texture, origin + d * t, 0));
                    }
                }
                for (o, &c) in scene.objects.iter().zip(positions) {
                    if let Some((t, n)) = o.shape.intersect(origin - c, d, 1e-6) {
                        if best.is_none_or(|b| t < b.0) {
                            best = Some((t, n, o.texture, origin - c + d * t, o.id));
                        }
                    }
                }
                let color = match best {
                    Some((t, n, tex, p, id)) => {
                        depth_row[u] = t as f32;
                        id_row[u] = id;
                        let lambert = n.normalize().dot(light).max(0.0) as f32;
                        let base = tex.color(p);
                        let s = scene.ambient + (1.0 - scene.ambient) * lambert;
                        [base[0] * s, base[1] * s, base[2] * s]
                    }
                    None => scene.sky,
                };
                for ch in 0..3 {
                    rgb_row[u * 3 + ch] = (color[ch].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        });
    let rgb = RgbImage::from_raw(k.width, k.height, rgb).expect("buffer size matches");
    Ok(Frame { rgb, depth, ids })
}

/// A full clip: scene, camera trajectory and intrinsics.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub scene: Scene,
    pub camera: CameraTrajectory,
    pub intrinsics: Intrinsics,
}

impl Clip {
    pub fn new(scene: Scene, camera: CameraTrajectory, intrinsics: Intrinsics) -> Result<Self> {
        if intrinsics.width == 0 || intrinsics.height == 0 {
            return Err(WorldError::ZeroSize {
                width: intrinsics.width,
                height: intrinsics.height,
            });
        }
        let n = camera.num_frames();
        for o in &scene.objects {
            if let Some(m) = &o.motion {
                if m.start_frame >= n {
                    return Err(WorldError::InvalidParameter(format!(
                        "object {} motion starts at frame {} but the clip has {n} frames",
                        o.id, m.start_frame
                    )));
                }
            }
        }
        Ok(Self {
            scene,
            camera,
            intrinsics,
        })
    }

    pub fn num_frames(&self) -> usize {
        self.camera.num_frames()
    }

    pub fn poses(&self) -> Vec<Pose> {
        self.camera.poses()
    }

    /// `poses.npy` rows: world-to-camera `[tx, ty, tz, qx, qy, qz, qw]` per frame.
    pub fn poses_w2c(&self) -> Vec<[f64; 7]> {
        self.poses().iter().map(Pose::to_w2c_array).collect()
    }

    /// `intrinsics.npy`: the 3x3 `K`.
    pub fn intrinsics_matrix(&self) -> [[f64; 3]; 3] {
        self.intrinsics.matrix()
    }

    /// World centres of all objects at every frame (`[frame][object]`).
    pub fn object_trajectories(&self) -> Vec<Vec<DVec3>> {
        let poses = self.poses();
        (0..poses.len())
            .map(|f| self.scene.object_positions(f, &poses))
            .collect()
    }

    /// Renders one frame.
    pub fn render(&self, frame: usize) -> Result<Frame> {
        let poses = self.poses();
        let pose = poses.get(frame).ok_or_else(|| {
            WorldError::InvalidParameter(format!(
                "frame {frame} out of range (clip has {} frames)",
                poses.len()
            ))
        })?;
        render_frame(
            &self.scene,
            &self.scene.object_positions(frame, &poses),
            pose,
            &self.intrinsics,
        )
    }

    /// Renders every frame.
    pub fn render_all(&self) -> Result<Vec<Frame>> {
        let poses = self.poses();
        poses
            .iter()
            .enumerate()
            .map(|(f, pose)| {
                render_frame(
                    &self.scene,
                    &self.scene.object_positions(f, &poses),
                    pose,
                    &self.intrinsics,
                )
            })
            .collect()
    }
}
