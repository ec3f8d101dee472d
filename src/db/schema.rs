//! The one diesel schema for both backends, written by hand to match
//! `migrations/sqlite` and `migrations/postgres` (the `schema_matches_migrations`
//! test in `tests/db.rs` checks every table on both backends).

diesel::table! {
    providers (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        base_url -> Nullable<Text>,
        config_json -> Text,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    provider_keys (id) {
        id -> BigInt,
        provider_id -> BigInt,
        key_id -> Text,
        secret_ciphertext -> Text,
        secret_hint -> Text,
        secret_fingerprint -> Text,
        weight -> Integer,
        priority -> Integer,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        balance_nanos -> BigInt,
        status -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        prepaid -> Bool,
        price_multiplier_ppm -> Nullable<BigInt>,
        reserved_nanos -> BigInt,
    }
}

diesel::table! {
    gateway_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        token_prefix -> Text,
        user_id -> Nullable<BigInt>,
        allowed_models -> Nullable<Text>,
        budget_nanos -> Nullable<BigInt>,
        budget_tokens -> Nullable<BigInt>,
        rpm -> Nullable<Integer>,
        tpm -> Nullable<Integer>,
        expires_at -> Nullable<BigInt>,
        enabled -> Bool,
        spent_nanos -> BigInt,
        spent_tokens -> BigInt,
        request_count -> BigInt,
        last_used_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        max_parallel -> Nullable<Integer>,
        quotas -> Nullable<Text>,
        price_multiplier_ppm -> Nullable<BigInt>,
        reserved_nanos -> BigInt,
        reserved_tokens -> BigInt,
        previous_token_hash -> Nullable<Text>,
        previous_expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    model_prices (id) {
        id -> BigInt,
        model -> Text,
        input_per_mtok_micros -> BigInt,
        output_per_mtok_micros -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        per_call_micros -> BigInt,
        cache_read_per_mtok_micros -> Nullable<BigInt>,
        cache_write_per_mtok_micros -> Nullable<BigInt>,
        reasoning_per_mtok_micros -> Nullable<BigInt>,
        per_image_micros -> BigInt,
        per_mchar_micros -> BigInt,
        per_audio_second_micros -> BigInt,
        per_search_micros -> BigInt,
    }
}

diesel::table! {
    model_redirects (id) {
        id -> BigInt,
        from_model -> Text,
        to_model -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    request_logs (id) {
        id -> BigInt,
        created_at -> BigInt,
        request_id -> Text,
        token_id -> Nullable<BigInt>,
        user_id -> Nullable<BigInt>,
        endpoint -> Text,
        provider -> Nullable<Text>,
        key_id -> Nullable<Text>,
        requested_model -> Nullable<Text>,
        upstream_model -> Nullable<Text>,
        status -> Integer,
        error_class -> Nullable<Text>,
        latency_ms -> BigInt,
        ttft_ms -> Nullable<BigInt>,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cost_nanos -> BigInt,
        priced -> Bool,
        tokens_estimated -> Bool,
        stream -> Bool,
        attempts -> Integer,
        record_id -> Text,
        usage_flags -> Nullable<Text>,
        attempt_log -> Nullable<Text>,
        cache_read_tokens -> BigInt,
        cache_write_tokens -> BigInt,
        reasoning_tokens -> BigInt,
        images -> BigInt,
        characters -> BigInt,
        audio_ms -> BigInt,
        search_units -> BigInt,
    }
}

diesel::table! {
    usage_daily (day, token_id, model) {
        day -> Text,
        token_id -> BigInt,
        model -> Text,
        requests -> BigInt,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cost_nanos -> BigInt,
    }
}

diesel::table! {
    system_values (name) {
        name -> Text,
        value -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    admin_keys (id) {
        id -> BigInt,
        name -> Text,
        public_key -> Text,
        fingerprint -> Text,
        enabled -> Bool,
        last_login_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        role -> Text,
    }
}

diesel::table! {
    admin_challenges (id) {
        id -> BigInt,
        nonce -> Text,
        admin_key_id -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    admin_sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        token_prefix -> Text,
        admin_key_id -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    operation_logs (id) {
        id -> BigInt,
        created_at -> BigInt,
        actor -> Text,
        session_id -> Nullable<BigInt>,
        action -> Text,
        target -> Text,
        before_json -> Nullable<Text>,
        after_json -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

diesel::joinable!(provider_keys -> providers (provider_id));
diesel::joinable!(gateway_tokens -> users (user_id));
diesel::joinable!(admin_challenges -> admin_keys (admin_key_id));
diesel::joinable!(admin_sessions -> admin_keys (admin_key_id));

diesel::table! {
    reservations (id) {
        id -> BigInt,
        token_id -> BigInt,
        user_id -> Nullable<BigInt>,
        nanos -> BigInt,
        tokens -> BigInt,
        user_nanos -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    limit_shares (token_id, limit_key, period_start, instance_id) {
        token_id -> BigInt,
        limit_key -> Text,
        period_start -> BigInt,
        instance_id -> Text,
        amount -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    limit_pools (token_id, limit_key, period_start) {
        token_id -> BigInt,
        limit_key -> Text,
        period_start -> BigInt,
        leases -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    billing_records (id) {
        id -> BigInt,
        created_at -> BigInt,
        kind -> Text,
        request_id -> Nullable<Text>,
        user_id -> Nullable<BigInt>,
        token_id -> Nullable<BigInt>,
        model -> Nullable<Text>,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        base_cost_nanos -> BigInt,
        multiplier_ppm -> BigInt,
        amount_nanos -> BigInt,
        priced -> Bool,
        note -> Nullable<Text>,
        images -> BigInt,
        characters -> BigInt,
        audio_ms -> BigInt,
        search_units -> BigInt,
    }
}

diesel::table! {
    usage_dead_letters (id) {
        id -> BigInt,
        created_at -> BigInt,
        record_id -> Text,
        request_id -> Text,
        error -> Text,
        record -> Text,
    }
}

diesel::table! {
    change_feed (id) {
        id -> BigInt,
        kind -> Text,
        subject -> Text,
        detail -> Nullable<Text>,
        at -> BigInt,
        origin -> Nullable<Text>,
    }
}

diesel::table! {
    response_owners (response_id) {
        response_id -> Text,
        provider -> Text,
        key_id -> Text,
        token_id -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    providers,
    provider_keys,
    users,
    gateway_tokens,
    model_prices,
    model_redirects,
    request_logs,
    usage_daily,
    reservations,
    limit_shares,
    limit_pools,
    billing_records,
    system_values,
    admin_keys,
    admin_challenges,
    admin_sessions,
    operation_logs,
    usage_dead_letters,
    change_feed,
    response_owners,
);
