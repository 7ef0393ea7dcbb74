"""Tiny randomly initialised Diffusers pipelines of every family cinegen runs, built offline and saved with
save_pretrained, so that tests load them back through cinegen exactly as a user's downloaded folder is loaded.

Configs follow diffusers' own fast tests (tests/pipelines/{wan,ltx,cogvideo,hunyuan_video}), shrunk further; the
tokenizers are word-level models built here (nothing comes from a hub). Each builder returns the pipeline object;
`build_all(folder)` saves every one under folder/<name> and returns {name: path}.
"""

from __future__ import annotations

from pathlib import Path

WORDS = tuple("<pad> </s> <unk> <s> a an the large small red green blue yellow white ball box circle square bounces "
         "moves left right up down on black grey background into slowly fast smooth transition loop dance".split())


# Llama 3's chat-template tokens that HunyuanVideo-I2V's prompt template holds (each one token, as there)
LLAMA3_SPECIALS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>", "\n\n")


def word_tokenizer(pad="<pad>", eos="</s>", bos=None, specials=()):
    """A word-level fast tokenizer over WORDS: enough for T5/UMT5/Llama/CLIP-shaped text encoders. specials:
    more tokens matched whole before words are split (a chat template's markers)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS + tuple(specials))}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(s, normalized=False) for s in specials])
    extra = {"bos_token": bos} if bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos, unk_token="<unk>", **extra)


def _t5(dim=16, umt5=False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel
    cfg, model = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    return model(cfg(vocab_size=len(WORDS), d_model=dim, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                     relative_attention_num_buckets=8))


def _wan_vae(z_dim=4, **kw):
    from diffusers import AutoencoderKLWan
    return AutoencoderKLWan(base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=[0.0] * z_dim,
                            latents_std=[1.0] * z_dim, **kw)


def _wan_transformer(cls=None, in_channels=4, out_channels=4, **kw):
    from diffusers import WanTransformer3DModel
    return (cls or WanTransformer3DModel)(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                          in_channels=in_channels, out_channels=out_channels, text_dim=16,
                                          freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32, **kw)


def _wan_text():
    return {"tokenizer": word_tokenizer(), "text_encoder": _t5(umt5=True)}


def _flow(shift=3.0):
    from diffusers import FlowMatchEulerDiscreteScheduler
    return FlowMatchEulerDiscreteScheduler(shift=shift)


def wan_t2v():
    from diffusers import WanPipeline
    return WanPipeline(vae=_wan_vae(), transformer=_wan_transformer(), scheduler=_flow(), **_wan_text())


def wan22_a14b():
    """Wan2.2-T2V-A14B's shape: two experts split at boundary_ratio (the high-noise one is `transformer`)."""
    from diffusers import WanPipeline
    return WanPipeline(vae=_wan_vae(), transformer=_wan_transformer(), transformer_2=_wan_transformer(),
                       boundary_ratio=0.875, scheduler=_flow(), **_wan_text())


def wan22_ti2v():
    """Wan2.2-TI2V-5B's shape: the 16x residual VAE with 2x2 patchified pixels, timesteps expanded per token."""
    from diffusers import WanPipeline
    vae = _wan_vae(z_dim=8, is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                   scale_factor_spatial=16)
    return WanPipeline(vae=vae, transformer=_wan_transformer(in_channels=8, out_channels=8), scheduler=_flow(),
                       expand_timesteps=True, **_wan_text())


def _clip_vision():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=1,
                                                         num_attention_heads=2, image_size=16,
                                                         intermediate_size=8, patch_size=4))
    return {"image_encoder": enc, "image_processor": CLIPImageProcessor(crop_size=16, size=16)}


def wan_i2v(flf2v=False):
    """Wan2.1-I2V (or FLF2V: pos_embed_seq_len set, first and last frame): 4 latent + 4 mask + 4 image channels."""
    from diffusers import WanImageToVideoPipeline
    extra = {"pos_embed_seq_len": 2 * 17} if flf2v else {}
    return WanImageToVideoPipeline(vae=_wan_vae(), scheduler=_flow(), **_wan_text(), **_clip_vision(),
                                   transformer=_wan_transformer(in_channels=12, image_dim=4, **extra))


def wan22_i2v():
    """Wan2.2-I2V-A14B's shape: two experts, image latents concatenated, no CLIP image encoder."""
    from diffusers import WanImageToVideoPipeline
    return WanImageToVideoPipeline(vae=_wan_vae(), scheduler=_flow(), **_wan_text(), image_encoder=None,
                                   image_processor=None, boundary_ratio=0.9,
                                   transformer=_wan_transformer(in_channels=12),
                                   transformer_2=_wan_transformer(in_channels=12))


def wan_vace():
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel
    transformer = _wan_transformer(WanVACETransformer3DModel, vace_layers=[0], vace_in_channels=4 * 2 + 64)
    return WanVACEPipeline(vae=_wan_vae(), transformer=transformer, scheduler=_flow(), **_wan_text())


def ltx():
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                                             num_layers=1, caption_channels=16)
    vae = AutoencoderKLLTXVideo(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                decoder_layers_per_block=(1, 1, 1, 1, 1),
                                spatio_temporal_scaling=(True, True, True, False),
                                decoder_spatio_temporal_scaling=(True, True, True, False),
                                decoder_inject_noise=(False, False, False, False, False),
                                upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                                timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
                                decoder_causal=False)
    return LTXPipeline(vae=vae, transformer=transformer, scheduler=_flow(1.0), text_encoder=_t5(),
                       tokenizer=word_tokenizer())


def _cogvideox_parts(in_channels=4, **kw):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=in_channels,
                                              out_channels=4, time_embed_dim=2, text_embed_dim=16, num_layers=1,
                                              sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
                                              temporal_compression_ratio=4, max_text_seq_length=16, **kw)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3,
                                 down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    return {"transformer": transformer, "vae": vae, "scheduler": CogVideoXDDIMScheduler(),
            "text_encoder": _t5(), "tokenizer": word_tokenizer()}


def cogvideox():
    from diffusers import CogVideoXPipeline
    return CogVideoXPipeline(**_cogvideox_parts())


def cogvideox_i2v():
    """CogVideoX-5b-I2V's shape: image latents concatenated, learned positional embeddings (one fixed size)."""
    from diffusers import CogVideoXImageToVideoPipeline
    return CogVideoXImageToVideoPipeline(**_cogvideox_parts(in_channels=8, use_rotary_positional_embeddings=True,
                                                            use_learned_positional_embeddings=True))


def _hunyuan_parts(transformer_cls=None, patch_size=1, **transformer_kw):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoTransformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel
    transformer = (transformer_cls or HunyuanVideoTransformer3DModel)(**{
        "in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 10, "num_layers": 1,
        "num_single_layers": 1, "num_refiner_layers": 1, "patch_size": patch_size, "patch_size_t": 1,
        "guidance_embeds": True, "text_embed_dim": 16, "pooled_projection_dim": 8, "rope_axes_dim": (2, 4, 4),
        **transformer_kw})
    vae = AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                    down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                    layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
                                    spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True)
    llama = LlamaModel(LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   pad_token_id=0, bos_token_id=3, eos_token_id=1))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=8, intermediate_size=37,
                                        num_hidden_layers=1, num_attention_heads=2, projection_dim=8,
                                        max_position_embeddings=77, bos_token_id=3, eos_token_id=1, pad_token_id=0))
    return {"transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
            "text_encoder": llama, "tokenizer": word_tokenizer(bos="<s>"), "text_encoder_2": clip,
            "tokenizer_2": word_tokenizer(bos="<s>")}


def hunyuan():
    from diffusers import HunyuanVideoPipeline
    return HunyuanVideoPipeline(**_hunyuan_parts())


def hunyuan_i2v(token_replace=False):
    """HunyuanVideo-I2V's shape (diffusers' own test): image latents concatenated (2 * 4 + 1 channels), no guidance
    embedding (token_replace: the later release's shape, the first latent frame replaced by the image's, with
    guidance embedded), and a LLaVA text encoder that reads the prompt through Llama 3's chat template with the image's 576
    CLIP patches in place of its <image> token. The word tokenizer knows the template's special tokens, so the
    pipeline's own template and crops run unchanged (its offsets count Llama 3's tokens: the tiny tokenizer splits
    the system text into a few tokens fewer, so the cropped embeddings start a little late; shapes are the same)."""
    from diffusers import HunyuanVideoImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    tokenizer = word_tokenizer(bos="<s>", specials=LLAMA3_SPECIALS)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=3, eos_token_id=1)
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, projection_dim=8, num_attention_heads=2,
                              num_hidden_layers=2, image_size=336, patch_size=14)      # 24 x 24 = 576 patches
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, pad_token_id=0,
                                                      image_token_index=image_token))
    parts = (_hunyuan_parts(image_condition_type="token_replace") if token_replace else
             _hunyuan_parts(in_channels=2 * 4 + 1, guidance_embeds=False, image_condition_type="latent_concat"))
    parts.update(text_encoder=llava, tokenizer=tokenizer)
    return HunyuanVideoImageToVideoPipeline(**parts, image_processor=CLIPImageProcessor(crop_size=336, size=336))


def framepack():
    """HunyuanVideo FramePack's shape: a SigLIP image encoder, clean-latent embedders, sections of 9 latents."""
    from diffusers import HunyuanVideoFramepackPipeline, HunyuanVideoFramepackTransformer3DModel
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel
    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=16, patch_size=4))
    parts = _hunyuan_parts(HunyuanVideoFramepackTransformer3DModel, patch_size=2, image_condition_type=None, has_image_proj=True,
                           image_proj_dim=32, has_clean_x_embedder=True)
    return HunyuanVideoFramepackPipeline(**parts, image_encoder=encoder, feature_extractor=SiglipImageProcessor(
        size={"height": 16, "width": 16}))


BUILDERS = {"wan": wan_t2v, "wan22-a14b": wan22_a14b, "wan22-ti2v": wan22_ti2v, "wan-i2v": wan_i2v,
            "wan-flf2v": lambda: wan_i2v(flf2v=True), "wan22-i2v": wan22_i2v, "wan-vace": wan_vace, "ltx": ltx, "cogvideox": cogvideox,
            "cogvideox-i2v": cogvideox_i2v, "hunyuan": hunyuan, "hunyuan-i2v": hunyuan_i2v,
            "hunyuan-i2v-replace": lambda: hunyuan_i2v(token_replace=True), "framepack": framepack}


def build_all(folder: Path, names=None) -> dict[str, Path]:
    import torch
    out = {}
    for name in names or BUILDERS:
        torch.manual_seed(0)
        pipe = BUILDERS[name]()
        pipe.save_pretrained(folder / name)
        out[name] = folder / name
    return out


def ltx_small_vae():
    """LTX-Video with a VAE that scales space 4x (diffusers' own test sizes), for training on tiny footage."""
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                                             num_layers=1, caption_channels=16)
    vae = AutoencoderKLLTXVideo(latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                spatio_temporal_scaling=(True, True, False, False), layers_per_block=(1, 1, 1, 1, 1),
                                patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    return LTXPipeline(vae=vae, transformer=transformer, scheduler=_flow(1.0), text_encoder=_t5(),
                       tokenizer=word_tokenizer())
